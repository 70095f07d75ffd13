import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

// What scripts/bundle.mjs made (`npm run build`): the files `tether` loads.
const BUNDLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dist/bundle");

/** The modules esbuild put in a chunk, by the path comments it writes before each. */
function modulesOf(file: string): string[] {
  return [...readFileSync(path.join(BUNDLE, file), "utf8").matchAll(/^\/\/ (\S+)$/gm)].map((m) => m[1]);
}

/** `file` and every chunk it imports statically, transitively: what loading it reads. */
function staticClosure(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const source = readFileSync(path.join(BUNDLE, file), "utf8");
  for (const m of source.matchAll(/^(?:import|export)[^;]*? from "\.\/([^"]+)";/gm)) staticClosure(m[1], seen);
  return seen;
}

test("zod in the CLI's bundle: English messages only, and the create path loads its small build", () => {
  const chunks = readdirSync(BUNDLE).filter((f) => f.endsWith(".js"));
  // Each language is a module of its own beside the index that lists them.
  const locales = chunks.flatMap(modulesOf).filter((m) => /\/zod\/v4\/locales\/(?!index\.js)/.test(m));
  assert.deepEqual(
    locales.map((m) => path.basename(m)),
    ["en.js"],
  );
  const specSchema = chunks.find((f) => f.startsWith("spec-schema-"));
  assert.ok(specSchema, `no spec-schema chunk among ${chunks.join(", ")}`);
  const loaded = [...staticClosure(specSchema), ...staticClosure("main.js")].flatMap(modulesOf);
  assert.ok(loaded.some((m) => m.includes("/zod/v4/mini/")));
  assert.deepEqual(
    loaded.filter((m) => m.includes("/zod/v4/classic/")),
    [],
  );
});
