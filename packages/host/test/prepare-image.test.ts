import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { compileCacheFiles } from "@tether/bundle";
import { compileCacheDigest, preparedTag, prepareImage } from "../src/index.js";
import { engineSkipReason, TestSandboxes, testBundle } from "./support/sandboxes.js";

const NOSHELL = "tether-test/noshell";
const skip = await engineSkipReason([NOSHELL]);
const t = new TestSandboxes({ bundleDelivery: "image" });
before(async () => {
  if (!skip) await t.setup();
});
after(() => t.cleanup());

describe("prepareImage: a derived image with the bundle built in", { skip }, () => {
  test("is built once, tagged by base image id and bundle hash, then reused", async () => {
    const bundle = await testBundle();
    const base = await t.docker.getImage(NOSHELL).inspect();
    const first = await prepareImage(t.docker, NOSHELL, bundle);
    assert.equal(first.tag, preparedTag(base.Id, bundle.contentHash, await compileCacheDigest(bundle.dir)));
    assert.equal(first.baseImageId, base.Id);
    const second = await prepareImage(t.docker, NOSHELL, bundle);
    assert.equal(second.reused, true);
    assert.equal(second.tag, first.tag);
    const derived = await t.docker.getImage(first.tag).inspect();
    assert.equal(derived.Config.Labels?.["tether.bundle"], bundle.contentHash);
    // The base's command is kept.
    assert.deepEqual(derived.Config.Cmd, base.Config.Cmd);
  });

  test("a backend told to use it runs sandboxes without the bundle mount", async () => {
    const info = await t.create(NOSHELL);
    const container = await t.docker.getContainer(info.backendId).inspect();
    assert.match(container.Config.Image, /^tether\/prepared:/);
    assert.equal(info.image, NOSHELL);
    assert.ok(!container.Mounts.some((m) => m.Destination === "/.tether"), "the bundle must not be bind-mounted");
    const agent = await t.connect(info.id);
    assert.equal((await agent.commands.run(["/hello", "prepared"])).stdout, "hello prepared\n");
    assert.match(await agent.files.read("/.tether/VERSION"), /^tether-bundle /);
    // The compile cache, derived and not in the manifest, is copied in too.
    const bundle = await testBundle();
    const cache = await compileCacheFiles(bundle.dir);
    assert.ok(cache.length > 0, "the test bundle has no compile cache");
    for (const rel of cache) {
      const inImage = Buffer.from(await agent.files.read(`/.tether/${rel}`, { format: "bytes" }));
      assert.ok(inImage.equals(readFileSync(path.join(bundle.dir, rel))), `${rel} differs in the image`);
    }
  });
});

describe("compileCacheDigest", () => {
  test("changes with any cache file's name or bytes, and is the same for the same files", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "tether-cache-digest-"));
    try {
      const cache = path.join(dir, "compile-cache", "v24-x64");
      mkdirSync(cache, { recursive: true });
      writeFileSync(path.join(cache, "aaaa0001"), "one");
      const first = await compileCacheDigest(dir);
      assert.equal(await compileCacheDigest(dir), first);
      writeFileSync(path.join(cache, "aaaa0001"), "two");
      const changed = await compileCacheDigest(dir);
      assert.notEqual(changed, first);
      renameSync(path.join(cache, "aaaa0001"), path.join(cache, "bbbb0002"));
      assert.notEqual(await compileCacheDigest(dir), changed);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
