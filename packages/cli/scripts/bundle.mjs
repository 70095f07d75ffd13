// Bundles the compiled CLI (dist/src) into dist/bundle with esbuild: `tether` then reads a few
// files instead of about 600, which on Node 20 was most of every command's time (about 0.3 s
// before `tether exec` did anything). Packages that find files of their own at run time stay
// imports: native addons, esbuild, and the agent and bundle builder (they locate the agent's
// sources and addons through their own paths).
import { rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ESM_REQUIRE_BANNER } from "@tether/bundle";
import { build } from "esbuild";

const cliDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outdir = path.join(cliDir, "dist", "bundle");

await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: { main: path.join(cliDir, "dist", "src", "main.js") },
  absWorkingDir: cliDir,
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  banner: { js: ESM_REQUIRE_BANNER },
  external: [
    "@tether/agent",
    "@tether/bundle",
    "@tether/spawn",
    "@tether/vsock",
    "better-sqlite3",
    "node-pty",
    "fs-xattr",
    "esbuild",
    "cpu-features",
    "*.node",
  ],
  logLevel: "warning",
});
