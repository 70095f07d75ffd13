#!/usr/bin/env node
import module from "node:module";

// Node >= 22.1 keeps V8's compiled code of the CLI between runs (in the OS's temp directory,
// checked against each file's contents); older Nodes skip this.
module.enableCompileCache?.();
// The CLI as esbuild bundled it (scripts/bundle.mjs, part of `npm run build`).
const { main } = await import("../dist/bundle/main.js");

main().catch((err) => {
  console.error(`tether: ${err instanceof Error ? err.message : err}`);
  process.exit(125);
});
