import { existsSync } from "node:fs";
import path from "node:path";
import { build } from "esbuild";
import { NATIVE_ADDONS } from "./addons.js";

/** Node version the agent script is compiled for; matches the pinned runtime's major version. */
const TARGET = "node24";

// The output is ESM; CommonJS dependencies (pino, busboy, ...) still call require() and may use
// __dirname, which ESM lacks. Give them real ones.
const BANNER = [
  'import { createRequire as __tetherCreateRequire } from "node:module";',
  'import { fileURLToPath as __tetherFileURLToPath } from "node:url";',
  'import { dirname as __tetherDirname } from "node:path";',
  "const require = __tetherCreateRequire(import.meta.url);",
  "const __filename = __tetherFileURLToPath(import.meta.url);",
  "const __dirname = __tetherDirname(__filename);",
].join("\n");

/** tetherd as one ESM file: the agent and all its pure-JS dependencies; native addons stay imports. */
export async function bundleAgentScript(agentDir: string): Promise<Uint8Array> {
  const entry = path.join(agentDir, "bin", "tetherd.js");
  if (!existsSync(path.join(agentDir, "dist", "src", "main.js"))) {
    throw new Error(`the agent in ${agentDir} is not compiled (dist/src/main.js is missing): run \`npx tsc -b\``);
  }
  const result = await build({
    entryPoints: [entry],
    // Paths in the output's comments are relative to this, so the file is the same in any clone.
    absWorkingDir: agentDir,
    outfile: path.join(agentDir, "tetherd.bundle.js"),
    bundle: true,
    write: false,
    platform: "node",
    format: "esm",
    target: TARGET,
    external: NATIVE_ADDONS.map((a) => a.name),
    banner: { js: BANNER },
    logLevel: "silent",
  });
  const [output] = result.outputFiles;
  if (result.outputFiles.length !== 1 || !output) {
    throw new Error(`esbuild produced ${result.outputFiles.length} files for ${entry}, expected one`);
  }
  return output.contents;
}
