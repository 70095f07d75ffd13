// Bundles the compiled CLI (dist/src) into dist/bundle with esbuild: `tether` then reads a few
// files instead of about 600, which on Node 20 was most of every command's time (about 0.3 s
// before `tether exec` did anything). Packages that find files of their own at run time stay
// imports: native addons, esbuild, and the agent and bundle builder (they locate the agent's
// sources and addons through their own paths).
import { rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ESM_REQUIRE_BANNER } from "@tether/bundle";
import { precompiledDescriptors } from "@tether/bundle/precompiled-descriptors";
import { build } from "esbuild";

const cliDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outdir = path.join(cliDir, "dist", "bundle");

/**
 * dockerode loads gRPC (for BuildKit sessions) and docker-modem loads ssh2 (for ssh:// hosts)
 * as they load; `tether` seldom needs either, and they cost about 40 ms of every command. Each of
 * those two modules exports one function: in the bundle it becomes a function that loads the
 * module on its first call, from node_modules as it is (not bundled: V8 would still read the
 * 1.6 MB of ssh2, gRPC and protobufjs that no command runs at every start, about a third of
 * the bundle `tether create` loads).
 */
const LAZY_MODULES = /[\\/]node_modules[\\/](dockerode[\\/]lib[\\/]session|docker-modem[\\/]lib[\\/]ssh)\.js$/;
const lazyEngineExtras = {
  name: "lazy-engine-extras",
  setup(build) {
    build.onLoad({ filter: LAZY_MODULES }, (args) => {
      // Resolved from the bundle's own directory, where every chunk is.
      const fromBundle = path.relative(outdir, args.path).split(path.sep).join("/");
      return {
        contents: [
          "let loaded;",
          "module.exports = function () {",
          `  loaded ??= require(${JSON.stringify(`lazy-module:${fromBundle}`)});`,
          "  return loaded.apply(this, arguments);",
          "};",
        ].join("\n"),
        loader: "js",
      };
    });
    build.onResolve({ filter: /^lazy-module:/ }, (args) => ({
      path: args.path.slice("lazy-module:".length),
      external: true,
    }));
  },
};

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
  // The protobuf descriptors the SDK and CLI use, decoded now rather than at every command (see the agent's bundle).
  plugins: [lazyEngineExtras, precompiledDescriptors(cliDir)],
  logLevel: "warning",
});
