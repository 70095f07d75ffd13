import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Metafile, Plugin } from "esbuild";

/**
 * One chunk for everything the agent loads at start, instead of a dozen.
 *
 * esbuild's code splitting gives each module to the chunk of the exact set of entry points
 * (the main one and every dynamically imported module) that reach it. The agent's lazily
 * loaded services share different parts of what the main entry loads, so that came out as
 * a dozen small chunks, all read, compiled and linked at every start: about 4 ms of a fresh
 * agent's 60 here, 1.5 times that in a freshly started container.
 *
 * So every module of the agent's own that is imported dynamically also imports the main
 * module, for nothing: it has run by then. Each lazy entry then reaches all that the main
 * entry reaches, the modules loaded at start share one set of entry points, and one chunk.
 * A lazy module must not also be imported statically, or that import would make a cycle
 * with the main module: `checkLazyModules` refuses such a build.
 */
export function oneStartupChunk(mainModule: string, ownDir: string): Plugin {
  return {
    name: "one-startup-chunk",
    setup(build) {
      const lazy = new Set<string>();
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.kind !== "dynamic-import" || args.pluginData === RESOLVING) return undefined;
        const resolved = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: RESOLVING,
        });
        // Only the agent's own modules: a dependency may be CommonJS, where an import would not do.
        if (resolved.errors.length === 0 && !resolved.external && isInside(resolved.path, ownDir)) {
          lazy.add(resolved.path);
        }
        // esbuild resolves it again, as it would have without this plugin.
        return undefined;
      });
      build.onLoad({ filter: /\.js$/ }, async (args) => {
        if (!lazy.has(args.path)) return undefined;
        const source = await readFile(args.path, "utf8");
        return {
          contents: `import ${JSON.stringify(mainModule)};\n${source}`,
          loader: "js",
          resolveDir: path.dirname(args.path),
        };
      });
    },
  };
}

/** Marks the plugin's own resolve call, which it must not intercept again. */
const RESOLVING = Symbol("one-startup-chunk");

function isInside(file: string, dir: string): boolean {
  const relative = path.relative(dir, file);
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative);
}

/**
 * Throws when the main entry reaches a lazily imported module of the agent's statically too:
 * its dynamic import then saves nothing, and with `oneStartupChunk` it would import the main
 * module in a cycle. Paths are the metafile's, relative to the build's working directory.
 */
export function checkLazyModules(metafile: Metafile, entry: string, workDir: string, ownDir: string): void {
  const imports = Object.values(metafile.inputs).flatMap((input) => input.imports);
  const lazy = new Set(
    imports
      .filter((i) => i.kind === "dynamic-import" && isInside(path.resolve(workDir, i.path), ownDir))
      .map((i) => i.path),
  );
  const reached = new Set([entry]);
  for (const file of reached) {
    for (const i of metafile.inputs[file]?.imports ?? []) {
      if (i.kind === "import-statement" || i.kind === "require-call") reached.add(i.path);
    }
  }
  const both = [...lazy].filter((p) => reached.has(p));
  if (both.length > 0) {
    throw new Error(`loaded at start by static imports, yet imported dynamically as if lazy: ${both.join(", ")}`);
  }
}
