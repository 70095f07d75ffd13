import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Sandbox } from "e2b-v250";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

// e2b 2.50 creates with POST /sandboxes and connects with POST /sandboxes/{id}/connect (v1 paths).
const skip = await dockerSkipReason();
const t = new TestServer();
let opts: { apiKey: string; apiUrl: string; sandboxUrl: string };

before(async () => {
  if (skip) return;
  await t.start();
  t.server.templates.put("debian", DEBIAN);
  opts = { apiKey: t.server.keys.create({ team: "old" }).key, apiUrl: t.url, sandboxUrl: t.url };
});
after(async () => {
  if (!skip) await t.close();
});

test("e2b 2.50 (v1 create and connect paths): create, run, pause, connect resumes, files, kill", { skip }, async () => {
  const sandbox = await Sandbox.create("debian", { ...opts, metadata: { sdk: "2.50" } });
  assert.equal((await sandbox.commands.run("echo old sdk")).stdout, "old sdk\n");
  await sandbox.files.write("/tmp/f.txt", "kept");
  assert.equal(await sandbox.pause(), true);
  const again = await Sandbox.connect(sandbox.sandboxId, opts);
  assert.equal(await again.files.read("/tmp/f.txt"), "kept");
  const listed = await Sandbox.list({ ...opts, query: { metadata: { sdk: "2.50" } } }).nextItems();
  assert.deepEqual(
    listed.map((s) => s.sandboxId),
    [sandbox.sandboxId],
  );
  assert.equal(await again.kill(), true);
  assert.equal(await Sandbox.kill(sandbox.sandboxId, opts), false);
});
