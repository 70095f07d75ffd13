import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { stampedHash, stampFile, stampInputs, writeStamp } from "../src/stamp.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-stamp-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const HERE = "/src/checkout-a";

describe("bundle stamp", () => {
  test("names the hash while every input is as stamped, and not once one changes or goes", async () => {
    const root = path.join(scratch, "root");
    const a = path.join(scratch, "a.js");
    const b = path.join(scratch, "b.js");
    writeFileSync(a, "one");
    writeFileSync(b, "two");
    assert.equal(await stampedHash(root, HERE), undefined, "no stamp yet");

    await writeStamp(root, HERE, "f".repeat(64), await stampInputs([a, b, a]));
    assert.equal(await stampedHash(root, HERE), "f".repeat(64));

    const later = new Date(statSync(a).mtimeMs + 5000);
    utimesSync(a, later, later);
    assert.equal(await stampedHash(root, HERE), undefined, "a newer mtime");

    await writeStamp(root, HERE, "e".repeat(64), await stampInputs([a, b]));
    writeFileSync(b, "three");
    assert.equal(await stampedHash(root, HERE), undefined, "a rewritten file");

    await writeStamp(root, HERE, "d".repeat(64), await stampInputs([a, b]));
    rmSync(b);
    assert.equal(await stampedHash(root, HERE), undefined, "a removed file");

    writeFileSync(stampFile(root, HERE), "{ not json");
    assert.equal(await stampedHash(root, HERE), undefined, "a damaged stamp");
  });

  test("a time put back to the millisecond (utimes with a Date, cp -p, tar) still matches", async () => {
    const root = path.join(scratch, "put-back");
    const input = path.join(scratch, "d.js");
    writeFileSync(input, "kept");
    // Times with a fraction of a millisecond, as files written by a build have; the first is
    // one a CI clone's main.js had (it came back as ...589.999 and the stamp vouched for nothing).
    for (const seconds of [1796667639.59038, 1796665821.7784, 1796667639.9999]) {
      utimesSync(input, seconds, seconds);
      assert.notEqual(statSync(input).mtimeMs % 1, 0);
      await writeStamp(root, HERE, "c".repeat(64), await stampInputs([input]));
      const { atime, mtime } = statSync(input);
      utimesSync(input, atime, new Date(mtime.getTime() + 2000));
      assert.equal(await stampedHash(root, HERE), undefined, "moved by two seconds");
      utimesSync(input, atime, mtime);
      assert.equal(await stampedHash(root, HERE), "c".repeat(64), `put back as a Date (${seconds} s) holds it`);
    }
  });

  test("each checkout of the sources has its own stamp under a shared root", async () => {
    const root = path.join(scratch, "shared");
    const input = path.join(scratch, "c.js");
    writeFileSync(input, "same");
    await writeStamp(root, HERE, "a".repeat(64), await stampInputs([input]));
    assert.equal(await stampedHash(root, "/src/checkout-b"), undefined, "another checkout's stamp vouches for nothing");
    await writeStamp(root, "/src/checkout-b", "b".repeat(64), await stampInputs([input]));
    assert.equal(await stampedHash(root, HERE), "a".repeat(64));
    assert.equal(await stampedHash(root, "/src/checkout-b"), "b".repeat(64));
  });
});
