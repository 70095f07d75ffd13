import { createRequire } from "node:module";
import type { Plugin } from "esbuild";

/**
 * node:zlib on first use, not at every start.
 *
 * Loading zlib costs about 1 ms of Node's own modules, and the agent needs it only for a
 * compressed request or a gzip download, yet connect-node's compression module and the
 * agent's files handler import it when they load. Their imports get a stand-in instead:
 * each zlib function, loading zlib at its first call. Classes and constants are left out,
 * so an import of one fails the build rather than quietly loading zlib at start.
 */
export function lazyZlib(): Plugin {
  return {
    name: "lazy-zlib",
    setup(build) {
      build.onResolve({ filter: /^(node:)?zlib$/ }, (args) =>
        args.kind === "import-statement" ? { path: "zlib", namespace: "lazy-zlib" } : undefined,
      );
      build.onLoad({ filter: /.*/, namespace: "lazy-zlib" }, () => ({ contents: standIn(), loader: "js" }));
    },
  };
}

/** The stand-in's source: zlib's functions (lower-case names; the capitalised ones are classes). */
function standIn(): string {
  const zlib = createRequire(import.meta.url)("node:zlib") as Record<string, unknown>;
  const functions = Object.keys(zlib).filter((name) => typeof zlib[name] === "function" && /^[a-z]/.test(name));
  return [
    'import { createRequire } from "node:module";',
    "let zlib;",
    'const load = () => (zlib ??= createRequire(import.meta.url)("node:zlib"));',
    ...functions.map((name) => `export function ${name}(...args) { return load().${name}(...args); }`),
  ].join("\n");
}
