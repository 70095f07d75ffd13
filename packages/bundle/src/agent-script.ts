import { existsSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { AGENT_PACKAGE_DIR } from "@tether/agent/paths";
import type { Plugin } from "esbuild";
import { NATIVE_ADDONS } from "./addons.js";
import { BUNDLE_NODE_FLAGS } from "./layout.js";

/** Node version the agent script is compiled for by default; matches the pinned runtime's major version. */
const TARGET = "node24";

/**
 * The first lines of every file of an ES module bundle: CommonJS dependencies (pino, busboy,
 * dockerode, ...) still call require() and may use __dirname, which ESM lacks. Gives them real ones.
 */
export const ESM_REQUIRE_BANNER = [
  'import { createRequire as __tetherCreateRequire } from "node:module";',
  'import { fileURLToPath as __tetherFileURLToPath } from "node:url";',
  'import { dirname as __tetherDirname } from "node:path";',
  "const require = __tetherCreateRequire(import.meta.url);",
  "const __filename = __tetherFileURLToPath(import.meta.url);",
  "const __dirname = __tetherDirname(__filename);",
].join("\n");

const BUILTINS = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/**
 * Node's builtins are imported with require() rather than as ES modules. An ES import of a
 * builtin makes Node build a module facade that reads every export once, and node:http's
 * lazy WebSocket/CloseEvent/MessageEvent getters then load the whole bundled undici at start:
 * about 14 MB of RSS and 30 ms of CPU on Node 24 for nothing the agent uses at start.
 */
const builtinsViaRequire: Plugin = {
  name: "builtins-via-require",
  setup(build) {
    build.onResolve({ filter: /^[a-z0-9_:/]+$/ }, (args) => {
      if (args.kind !== "import-statement" && args.kind !== "dynamic-import") return undefined;
      if (!BUILTINS.has(args.path)) return undefined;
      return { path: args.path, namespace: "builtin-require" };
    });
    build.onLoad({ filter: /.*/, namespace: "builtin-require" }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: "js",
    }));
  },
};

/** Where the agent's ES modules go inside the bundle; `tetherd.js` beside it is the loader. */
export const AGENT_DIR = "agent";
/** The V8 compile cache made at build time (see `compileCacheLoader`), beside the loader. */
export const COMPILE_CACHE_DIR = "compile-cache";

/**
 * tetherd.js, the file node runs: it turns on Node's module compile cache for the cache shipped
 * in the bundle before the agent's modules are compiled, so V8 deserializes their code instead
 * of parsing about 1 MB of source at every start. The cache is written when the bundle is built
 * and only read in sandboxes (the bundle is mounted read-only); `portable` keys it by paths
 * relative to the cache directory, so it holds wherever the bundle is mounted. Node checks each
 * entry against the module's source hash and V8 against its version and flags, and compiles
 * normally when one does not match. Runtimes without the API (Node < 22.1) just skip it.
 * V8 keeps caches per set of flags: the flags are written into the loader, so a bundle whose
 * agent runs with other flags (and whose cache is made for them) is another bundle, with
 * another content hash, not an old one whose cache no start can use.
 */
const LOADER = [
  `// Started with node ${BUNDLE_NODE_FLAGS.join(" ")} (the flags compile-cache/ is made for).`,
  'import module from "node:module";',
  'import { fileURLToPath } from "node:url";',
  "module.enableCompileCache?.({",
  `  directory: fileURLToPath(new URL("./${COMPILE_CACHE_DIR}", import.meta.url)),`,
  "  portable: true,",
  "});",
  `await import("./${AGENT_DIR}/tetherd.js");`,
  "",
].join("\n");

/** The @tether/agent package this one depends on: its directory (sources, bin, compiled dist) and version. */
export function agentPackage(): { dir: string; version: string } {
  const dir = AGENT_PACKAGE_DIR;
  const { name, version } = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as {
    name?: string;
    version: string;
  };
  if (name !== "@tether/agent") throw new Error(`expected @tether/agent in ${dir}`);
  return { dir, version };
}

/** One file of the bundled agent, relative to the bundle's root. */
export interface AgentScriptFile {
  path: string;
  data: Uint8Array;
}

/**
 * tetherd as ES modules: the loader `tetherd.js`, and under agent/ the agent with its pure-JS
 * dependencies, split by esbuild so what is imported dynamically (zod for /init and cocoon,
 * sshpk for workspace keys) is a chunk of its own, read only on first use, and what is loaded
 * at start is one chunk (see one-startup-chunk.ts). Native addons stay
 * imports. Not minified: it saved no memory (V8 keeps lazily compiled functions as source
 * ranges either way) and readable stack traces are worth more.
 */
export async function bundleAgentScript(
  agentDir: string,
  target = TARGET,
): Promise<{ files: AgentScriptFile[]; inputs: string[] }> {
  const entry = path.join(agentDir, "bin", "tetherd.js");
  if (!existsSync(path.join(agentDir, "dist", "src", "main.js"))) {
    throw new Error(`the agent in ${agentDir} is not compiled (dist/src/main.js is missing): run \`npx tsc -b\``);
  }
  const outdir = path.join(agentDir, "tetherd.bundle");
  // Loaded here, not with the package: every `tether` command imports the host, and only
  // a bundle build needs esbuild and protobuf-es's descriptor.proto (about 20 ms to load).
  const [
    { build },
    { precompiledDescriptors },
    { oneStartupChunk, checkLazyModules },
    { lazyZlib },
    { zodEnglishOnly },
  ] = await Promise.all([
    import("esbuild"),
    import("./precompiled-descriptors.js"),
    import("./one-startup-chunk.js"),
    import("./lazy-zlib.js"),
    import("./zod-english-only.js"),
  ]);
  const ownDir = path.join(agentDir, "dist");
  const result = await build({
    entryPoints: { tetherd: entry },
    // Paths in the output's comments are relative to this, so the files are the same in any clone.
    absWorkingDir: agentDir,
    outdir,
    entryNames: `${AGENT_DIR}/[name]`,
    chunkNames: `${AGENT_DIR}/[name]-[hash]`,
    bundle: true,
    splitting: true,
    write: false,
    platform: "node",
    format: "esm",
    target,
    external: NATIVE_ADDONS.map((a) => a.name),
    banner: { js: ESM_REQUIRE_BANNER },
    plugins: [
      // Before builtinsViaRequire, which takes every other builtin.
      lazyZlib(),
      builtinsViaRequire,
      oneStartupChunk(path.join(ownDir, "src", "main.js"), ownDir),
      precompiledDescriptors(agentDir),
      zodEnglishOnly(),
    ],
    // Every free `Headers` in the agent (connect-es makes one per request) is the agent's own:
    // the global one is undici's, whose first use loads all of undici (see fetch-headers.ts).
    inject: [path.join(agentDir, "dist", "src", "server", "fetch-headers.js")],
    logLevel: "silent",
    metafile: true,
  });
  checkLazyModules(result.metafile, path.relative(agentDir, entry), agentDir, ownDir);
  const files = result.outputFiles.map((f) => ({
    path: path.relative(outdir, f.path).split(path.sep).join("/"),
    data: f.contents,
  }));
  if (!files.some((f) => f.path === `${AGENT_DIR}/tetherd.js`)) {
    throw new Error(
      `esbuild produced no ${AGENT_DIR}/tetherd.js for ${entry} (got ${files.map((f) => f.path).join(", ")})`,
    );
  }
  // The files esbuild read (paths relative to agentDir; plugins' virtual modules are namespace:name).
  const inputs = Object.keys(result.metafile.inputs)
    .filter((input) => !/^[a-z-]+:/.test(input))
    .map((input) => path.resolve(agentDir, input));
  return { files: [{ path: "tetherd.js", data: Buffer.from(LOADER) }, ...files], inputs };
}
