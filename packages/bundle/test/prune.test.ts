import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { MANIFEST_FILE, markBundleUsed, pruneBundles } from "../src/index.js";

const DAY = 24 * 3600 * 1000;
const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-prune-test-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A directory that looks like a built bundle: the manifest `readManifest` accepts, and a file. */
function fakeBundle(root: string, name: string, options: { hash?: string; ageMs?: number } = {}): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, "bin"), { recursive: true });
  writeFileSync(path.join(dir, "bin", "node"), "not really node");
  const manifest = { format: 1, contentHash: options.hash ?? `${name}${"0".repeat(48)}`, size: 1234, files: [] };
  writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest));
  age(dir, options.ageMs ?? 0);
  return dir;
}

function age(dir: string, ms: number) {
  const at = new Date(Date.now() - ms);
  utimesSync(dir, at, at);
}

describe("pruneBundles", () => {
  test("removes old unused bundles and abandoned builds, and nothing else", async () => {
    const root = path.join(scratch, "root");
    mkdirSync(root);
    const old = fakeBundle(root, "aaaaaaaaaaaaaaaa", { ageMs: 10 * DAY });
    const mounted = fakeBundle(root, "bbbbbbbbbbbbbbbb", { ageMs: 10 * DAY });
    const recent = fakeBundle(root, "cccccccccccccccc", { ageMs: DAY });
    const misnamed = fakeBundle(root, "dddddddddddddddd", { hash: "e".repeat(64), ageMs: 10 * DAY });
    const other = path.join(root, "not-a-bundle");
    mkdirSync(other);
    age(other, 10 * DAY);
    const abandoned = path.join(root, ".eeeeeeeeeeeeeeee.partial-x1y2z3");
    mkdirSync(abandoned);
    age(abandoned, 2 * 3600 * 1000);
    const building = path.join(root, ".ffffffffffffffff.partial-a1b2c3");
    mkdirSync(building);
    // A mount names the bundle through whatever path its creator had: here a symlinked root.
    const link = path.join(scratch, "linked-root");
    symlinkSync(root, link);

    const report = await pruneBundles({
      root,
      inUse: [path.join(link, path.basename(mounted))],
      olderThanMs: 7 * DAY,
    });

    assert.deepEqual(report.removed, [{ dir: old, bytes: 1234 }]);
    assert.deepEqual(report.kept, [
      { dir: mounted, reason: "in use" },
      { dir: recent, reason: "recently used" },
    ]);
    assert.ok(!existsSync(old));
    assert.ok(!existsSync(abandoned));
    for (const dir of [mounted, recent, misnamed, other, building]) assert.ok(existsSync(dir), dir);
    assert.ok(!existsSync(path.join(root, `.aaaaaaaaaaaaaaaa.removing-${process.pid}`)));
  });

  test("a bundle marked used stays; a missing root is nothing to prune", async () => {
    const root = path.join(scratch, "marked");
    mkdirSync(root);
    const dir = fakeBundle(root, "1111111111111111", { ageMs: 30 * DAY });
    await markBundleUsed(dir);
    assert.ok(Date.now() - statSync(dir).mtimeMs < DAY);
    const report = await pruneBundles({ root, inUse: [], olderThanMs: 7 * DAY });
    assert.deepEqual(report.removed, []);
    assert.ok(existsSync(dir));
    assert.deepEqual(await pruneBundles({ root: path.join(scratch, "nowhere"), inUse: [], olderThanMs: 0 }), {
      removed: [],
      kept: [],
    });
  });
});
