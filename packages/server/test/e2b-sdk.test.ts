import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CommandExitError, Sandbox } from "e2b";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

const skip = await dockerSkipReason();
const t = new TestServer();

before(async () => {
  if (skip) return;
  await t.start();
  const { key } = t.server.keys.create({ team: "alpha" });
  t.server.templates.put("debian", DEBIAN);
  // What a user sets: the SDK in its normal mode, every call through this one URL.
  process.env.E2B_API_URL = t.url;
  process.env.E2B_SANDBOX_URL = t.url;
  process.env.E2B_API_KEY = key;
});
after(async () => {
  if (!skip) await t.close();
});

test("create from a template, run a command, getInfo, list, kill", { skip }, async () => {
  const sandbox = await Sandbox.create("debian", { metadata: { purpose: "core" } });
  assert.match(sandbox.sandboxId, /^[a-z0-9]+$/);
  const result = await sandbox.commands.run("echo hello from $(cat /etc/debian_version | cut -c1-2)");
  assert.equal(result.exitCode, 0);
  assert.match(result.stdout, /^hello from \d/);
  const failed = await sandbox.commands.run("exit 7").catch((e: unknown) => e);
  assert.ok(failed instanceof CommandExitError);
  assert.equal(failed.exitCode, 7);

  const info = await sandbox.getInfo();
  assert.equal(info.sandboxId, sandbox.sandboxId);
  assert.equal(info.templateId, "debian");
  assert.equal(info.state, "running");
  assert.deepEqual(info.metadata, { purpose: "core" });
  assert.ok(info.endAt.getTime() > Date.now());

  const listed = await Sandbox.list({ query: { metadata: { purpose: "core" } } }).nextItems();
  assert.deepEqual(
    listed.map((s) => s.sandboxId),
    [sandbox.sandboxId],
  );
  assert.equal(await sandbox.isRunning(), true);
  assert.equal(await sandbox.kill(), true);
  assert.equal(await Sandbox.kill(sandbox.sandboxId), false);
  await assert.rejects(Sandbox.getInfo(sandbox.sandboxId), /not found/);
});
