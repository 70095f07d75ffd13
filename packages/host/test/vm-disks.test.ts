import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { pruneDisks } from "../src/backends/vm/disks.js";

const cache = mkdtempSync(path.join(os.tmpdir(), "tether-vm-disks-"));
after(() => rmSync(cache, { recursive: true, force: true }));

test("gc removes the cached disks no sandbox or snapshot is over and none used lately; keeps the rest", async () => {
  const day = 24 * 3600 * 1000;
  const now = Date.now();
  const disk = (kind: string, name: string, ageMs: number) => {
    mkdirSync(path.join(cache, kind), { recursive: true });
    const file = path.join(cache, kind, name);
    writeFileSync(file, Buffer.alloc(4096));
    const at = new Date(now - ageMs);
    utimesSync(file, at, at);
    return file;
  };
  const unused = disk("images", "old.ext4", 10 * day);
  const used = disk("images", "used.ext4", 10 * day);
  const recent = disk("images", "recent.ext4", 60_000);
  const oldBundle = disk("bundles", "b1.ext4", 10 * day);
  const building = disk("images", "partial.ext4.tmp-1", 10 * day);

  const report = await pruneDisks(cache, new Set([used]), day, now);

  assert.deepEqual(report.removed.map((r) => r.dir).sort(), [oldBundle, unused].sort());
  assert.ok(report.removed.every((r) => r.bytes === 4096));
  assert.deepEqual(
    report.kept.map((k) => [k.dir, k.reason]).sort(),
    [
      [recent, "recently used"],
      [used, "in use"],
    ].sort(),
  );
  assert.equal(existsSync(unused), false);
  assert.equal(existsSync(used), true);
  assert.equal(existsSync(recent), true);
  // Not a disk (a build's temp file): not the cache's to judge.
  assert.equal(existsSync(building), true);
});
