import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { STAMP_FILE, stampedHash, stampInputs, writeStamp } from "../src/stamp.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-stamp-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe("bundle stamp", () => {
  test("names the hash while every input is as stamped, and not once one changes or goes", async () => {
    const root = path.join(scratch, "root");
    const a = path.join(scratch, "a.js");
    const b = path.join(scratch, "b.js");
    writeFileSync(a, "one");
    writeFileSync(b, "two");
    assert.equal(await stampedHash(root), undefined, "no stamp yet");

    await writeStamp(root, "f".repeat(64), await stampInputs([a, b, a]));
    assert.equal(await stampedHash(root), "f".repeat(64));

    const later = new Date(statSync(a).mtimeMs + 5000);
    utimesSync(a, later, later);
    assert.equal(await stampedHash(root), undefined, "a newer mtime");

    await writeStamp(root, "e".repeat(64), await stampInputs([a, b]));
    writeFileSync(b, "three");
    assert.equal(await stampedHash(root), undefined, "a rewritten file");

    await writeStamp(root, "d".repeat(64), await stampInputs([a, b]));
    rmSync(b);
    assert.equal(await stampedHash(root), undefined, "a removed file");

    writeFileSync(path.join(root, STAMP_FILE), "{ not json");
    assert.equal(await stampedHash(root), undefined, "a damaged stamp");
  });
});
