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
import { zodEnglishOnly } from "@tether/bundle/zod-english-only";
import { build } from "esbuild";

const cliDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outdir = path.join(cliDir, "dist", "bundle");

/**
 * Modules of the engine client that `tether` seldom runs, yet loads or parses at every start:
 * dockerode's gRPC session (BuildKit) and docker-modem's ssh2 (ssh:// hosts) load as dockerode
 * loads, tar-fs (image builds) too, and BuildKit's protobufjs is parsed with the rest of the
 * bundle. Each becomes a shim here that loads the module from node_modules as it is (not
 * bundled) on first use: a function for the two that export one, a proxy for the others. That
 * is 1.8 MB fewer for V8 to read at every command, most of what `tether create` loaded.
 */
const LAZY_MODULES = new Map([
  ["dockerode/lib/session.js", "function"],
  ["docker-modem/lib/ssh.js", "function"],
  ["dockerode/lib/buildkit.js", "object"],
  ["tar-fs/index.js", "object"],
]);
const LAZY_FILTER =
  /[\\/]node_modules[\\/](dockerode[\\/]lib[\\/](session|buildkit)|docker-modem[\\/]lib[\\/]ssh|tar-fs[\\/]index)\.js$/;
const lazyEngineExtras = {
  name: "lazy-engine-extras",
  setup(build) {
    build.onLoad({ filter: LAZY_FILTER }, (args) => {
      const kind = LAZY_MODULES.get(
        args.path
          .split(path.sep)
          .join("/")
          .replace(/^.*\/node_modules\//, ""),
      );
      if (!kind) throw new Error(`lazy-engine-extras: no kind for ${args.path}`);
      // Resolved from the bundle's own directory, where every chunk is.
      const fromBundle = path.relative(outdir, args.path).split(path.sep).join("/");
      const load = `(loaded ??= require(${JSON.stringify(`lazy-module:${fromBundle}`)}))`;
      return {
        contents: [
          "let loaded;",
          kind === "function"
            ? `module.exports = function () { return ${load}.apply(this, arguments); };`
            : `module.exports = new Proxy({}, { get: (_, key) => ${load}[key], has: (_, key) => key in ${load} });`,
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
  plugins: [lazyEngineExtras, zodEnglishOnly(), precompiledDescriptors(cliDir)],
  logLevel: "warning",
});
