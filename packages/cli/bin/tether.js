#!/usr/bin/env node
import { main } from "../dist/src/main.js";

main().catch((err) => {
  console.error(`tether: ${err instanceof Error ? err.message : err}`);
  process.exit(125);
});
