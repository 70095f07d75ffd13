import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { BUILD_LOCK_FILE, withBuildLock } from "../src/build-lock.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-build-lock-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe("bundle build lock", () => {
  test("builds under one root run one at a time, and the lock goes with the last", async () => {
    const root = path.join(scratch, "serial");
    const events: string[] = [];
    const build = (name: string) =>
      withBuildLock(root, async () => {
        events.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, 50));
        events.push(`end ${name}`);
        return name;
      });
    assert.deepEqual(await Promise.all([build("a"), build("b"), build("c")]), ["a", "b", "c"]);
    for (let i = 0; i < events.length; i += 2) {
      assert.equal(events[i].replace("start", "end"), events[i + 1], `interleaved: ${events.join(", ")}`);
    }
    assert.equal(existsSync(path.join(root, BUILD_LOCK_FILE)), false);
  });

  test("a failed build releases the lock", async () => {
    const root = path.join(scratch, "failed");
    await assert.rejects(
      withBuildLock(root, async () => {
        throw new Error("esbuild failed");
      }),
      /esbuild failed/,
    );
    assert.equal(await withBuildLock(root, async () => "next"), "next");
  });

  test("the lock of a builder that died is taken over", async () => {
    const root = path.join(scratch, "stale");
    mkdirSync(root, { recursive: true });
    const dead = spawnSync("true").pid as number;
    writeFileSync(path.join(root, BUILD_LOCK_FILE), `${dead}\n`);
    assert.equal(await withBuildLock(root, async () => "built"), "built");
  });
});
