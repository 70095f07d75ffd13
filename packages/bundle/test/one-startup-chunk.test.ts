import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { checkLazyModules, oneStartupChunk } from "../src/one-startup-chunk.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-startup-chunk-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A small agent-shaped project: main.js loads a.js and b.js at start and two services
 * lazily, each of which shares one of those with it (what made esbuild split the start).
 */
function project(name: string, files: Record<string, string>): string {
  const dir = path.join(scratch, name);
  mkdirSync(path.join(dir, "src"), { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, "src", file), text);
  return dir;
}

const AGENT = {
  "entry.js": `import { main } from "./main.js";\nexport const result = await main();\n`,
  "main.js": [
    `import { a } from "./a.js";`,
    `import { b } from "./b.js";`,
    `export async function main() {`,
    `  const one = await import("./lazy-one.js");`,
    `  const two = await import("./lazy-two.js");`,
    `  return [a(), b(), one.one(), two.two()].join(",");`,
    `}`,
  ].join("\n"),
  "a.js": `export const a = () => "a";\n`,
  "b.js": `export const b = () => "b";\n`,
  "lazy-one.js": `import { a } from "./a.js";\nexport const one = () => "one+" + a();\n`,
  "lazy-two.js": `import { b } from "./b.js";\nexport const two = () => "two+" + b();\n`,
};

async function bundle(dir: string, withPlugin: boolean) {
  const ownDir = path.join(dir, "src");
  const outdir = path.join(dir, "out");
  const result = await build({
    entryPoints: { entry: path.join(ownDir, "entry.js") },
    absWorkingDir: dir,
    outdir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    metafile: true,
    logLevel: "silent",
    plugins: withPlugin ? [oneStartupChunk(path.join(ownDir, "main.js"), ownDir)] : [],
  });
  /** The chunks entry.js imports statically: what a start loads besides it. */
  const startChunks = [...readFileSync(path.join(outdir, "entry.js"), "utf8").matchAll(/from "\.\/([^"]+)"/g)].map(
    (m) => m[1],
  );
  return { result, outdir, startChunks };
}

describe("one startup chunk", () => {
  test("what the main entry loads at start is one chunk, and the lazy modules still load and work", async () => {
    const without = await bundle(project("plain", AGENT), false);
    assert.ok(without.startChunks.length > 1, `esbuild alone splits the start: ${without.startChunks}`);

    const dir = project("one-chunk", AGENT);
    const { startChunks, outdir } = await bundle(dir, true);
    assert.equal(startChunks.length, 1, `start chunks: ${startChunks}`);
    const { result } = await import(pathToFileURL(path.join(outdir, "entry.js")).href);
    assert.equal(result, "a,b,one+a,two+b");
  });

  test("a lazily imported module that the main entry also imports statically is refused", async () => {
    const dir = project("both", {
      ...AGENT,
      "main.js": `import { one } from "./lazy-one.js";\n${AGENT["main.js"]}\nexport const eager = one;\n`,
    });
    const { result } = await bundle(dir, false);
    assert.throws(
      () => checkLazyModules(result.metafile, "src/entry.js", dir, path.join(dir, "src")),
      /loaded at start by static imports, yet imported dynamically as if lazy: src\/lazy-one\.js/,
    );
    const fine = await bundle(project("fine", AGENT), false);
    checkLazyModules(
      fine.result.metafile,
      "src/entry.js",
      path.join(scratch, "fine"),
      path.join(scratch, "fine", "src"),
    );
  });
});
