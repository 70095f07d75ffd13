import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { build } from "esbuild";
import { lazyZlib } from "../src/lazy-zlib.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-lazy-zlib-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

async function bundle(name: string, source: string): Promise<string> {
  const entry = path.join(scratch, `${name}.js`);
  writeFileSync(entry, source);
  const outfile = path.join(scratch, `${name}.out.mjs`);
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "node",
    logLevel: "silent",
    plugins: [lazyZlib()],
  });
  return outfile;
}

describe("lazy zlib", () => {
  test("zlib loads at the first call of one of its functions, not at import, and works", async () => {
    const outfile = await bundle(
      "uses",
      [
        'import * as zlib from "node:zlib";',
        'import { gunzipSync } from "zlib";',
        "const loaded = () => process.moduleLoadList.includes('NativeModule zlib');",
        "export const atImport = loaded();",
        "export const roundTrip = gunzipSync(zlib.gzipSync('hello')).toString();",
        "export const afterCall = loaded();",
      ].join("\n"),
    );
    const script = `const m = await import(${JSON.stringify(outfile)}); console.log(JSON.stringify(m));`;
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script]);
    assert.deepEqual(JSON.parse(stdout), { atImport: false, roundTrip: "hello", afterCall: true });
  });

  test("importing one of zlib's classes fails the build instead of loading zlib at start", async () => {
    await assert.rejects(bundle("class", 'import { Gzip } from "node:zlib";\nexport const g = Gzip;\n'), /Gzip/);
  });
});
