#!/usr/bin/env node
// The CLI as esbuild bundled it (scripts/bundle.mjs, part of `npm run build`).
import { main } from "../dist/bundle/main.js";

main().catch((err) => {
  console.error(`tether: ${err instanceof Error ? err.message : err}`);
  process.exit(125);
});
