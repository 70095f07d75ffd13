import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Docker from "dockerode";
import {
  EngineUnavailableError,
  ImageNotFoundError,
  Sandboxes,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxStartError,
  VANISHED,
} from "../src/index.js";
import { engineSkipReason, eventually, TestSandboxes } from "./support/sandboxes.js";

const BUSYBOX = "tether-test/busybox";
const skip = await engineSkipReason([BUSYBOX]);
const t = new TestSandboxes();
let emptyDir: string;
before(async () => {
  if (skip) return;
  await t.setup();
  emptyDir = await mkdtemp(path.join(os.tmpdir(), "tether-host-empty-"));
});
after(async () => {
  await t.cleanup();
  if (emptyDir) await rm(emptyDir, { recursive: true, force: true });
});

describe("lifecycle", { skip }, () => {
  test("stop, then start again: the agent answers with the same token", async () => {
    const info = await t.create(BUSYBOX);
    await t.sandboxes.stop(info.id);
    const stopped = await t.sandboxes.get(info.id);
    assert.equal(stopped.state, "stopped");
    await assert.rejects(t.sandboxes.connect(info.id), SandboxNotRunningError);
    const started = await t.sandboxes.start(info.id);
    assert.equal(started.state, "running");
    assert.equal(started.endpoint?.accessToken, info.endpoint?.accessToken);
    const agent = await t.connect(info.id);
    assert.equal((await agent.commands.run(["echo", "back"])).stdout, "back\n");
  });

  test("pause freezes the sandbox, unpause resumes it", async () => {
    const info = await t.create(BUSYBOX);
    const agent = await t.connect(info.id);
    const counter = await agent.commands.start([
      "sh",
      "-c",
      "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done",
    ]);
    await t.sandboxes.pause(info.id);
    assert.equal((await t.sandboxes.get(info.id)).state, "paused");
    const frozen = await t.docker.getContainer(info.backendId).inspect();
    assert.equal(frozen.State.Paused, true);
    await t.sandboxes.unpause(info.id);
    assert.equal((await t.sandboxes.get(info.id)).state, "running");
    const first = Number(await agent.files.read("/tmp/count"));
    await eventually(
      async () => (Number(await agent.files.read("/tmp/count")) > first ? true : undefined),
      "the counter to move again",
    );
    await counter.kill();
  });

  test("logs: stdout and stderr apart; follow streams until aborted", async () => {
    const info = await t.create(BUSYBOX, {
      command: ["sh", "-c", "echo out-line; echo err-line >&2; while :; do echo tick; sleep 0.1; done"],
    });
    const abort = new AbortController();
    const seen: string[] = [];
    for await (const chunk of t.sandboxes.logs(info.id, { follow: true, signal: abort.signal })) {
      seen.push(`${chunk.stream}:${chunk.data}`);
      if (seen.filter((s) => s.includes("tick")).length >= 3) abort.abort();
    }
    assert.ok(seen.some((s) => s.startsWith("stdout:") && s.includes("out-line")));
    assert.ok(seen.some((s) => s.startsWith("stderr:") && s.includes("err-line")));
    const tail = [];
    for await (const chunk of t.sandboxes.logs(info.id, { tail: 1 })) tail.push(chunk);
    assert.equal(tail.length, 1);
  });

  test("docker rm -f behind our back: get says it vanished, remove is idempotent and clears the host dir", async () => {
    const info = await t.create(BUSYBOX);
    await t.docker.getContainer(info.backendId).remove({ force: true });
    // The registry still knows it: marked as vanished, and it cannot be reached.
    const gone = await t.sandboxes.get(info.id);
    assert.equal(gone.state, "error");
    assert.equal(gone.error, VANISHED);
    assert.equal(gone.endpoint, undefined);
    await assert.rejects(t.sandboxes.connect(info.id), SandboxNotRunningError);
    assert.ok((await t.sandboxDirs()).includes(info.id));
    await t.sandboxes.remove(info.id);
    await t.sandboxes.remove(info.id);
    assert.ok(!(await t.sandboxDirs()).includes(info.id));
    assert.ok(!(await t.sandboxes.list()).some((s) => s.id === info.id));
  });

  test("operations on an unknown sandbox say so", async () => {
    await assert.rejects(t.sandboxes.get("000000000000"), SandboxNotFoundError);
    await assert.rejects(t.sandboxes.stop("000000000000"), SandboxNotFoundError);
    await assert.rejects(t.sandboxes.pause("000000000000"), SandboxNotFoundError);
  });
});

describe("failures leave nothing behind", { skip }, () => {
  test("an agent that exits before it is ready: SandboxStartError with its last log lines", async () => {
    const before = await t.sandboxDirs();
    const err = await t.create(BUSYBOX, { user: "no-such-user" }).catch((e) => e);
    assert.ok(err instanceof SandboxStartError, String(err));
    assert.match(err.reason, /exited/);
    assert.ok(
      err.logLines.some((l: string) => /no-such-user/.test(l)),
      err.logLines.join("\n"),
    );
    assert.match(err.message, /no-such-user/);
    assert.ok(!(await t.containers()).some((c) => c.Labels["tether.sandbox"] === err.id));
    assert.deepEqual(await t.sandboxDirs(), before);
  });

  test("an entrypoint that cannot even start: SandboxStartError with the engine's words", async () => {
    const before = await t.sandboxDirs();
    // An empty directory over the bundle's lib/ hides the loader the entrypoint is.
    const err = await t
      .create(BUSYBOX, { mounts: [{ source: emptyDir, target: "/.tether/lib", readOnly: true }] })
      .catch((e) => e);
    assert.ok(err instanceof SandboxStartError, String(err));
    assert.match(err.message, /ld-linux-x86-64\.so\.2|no such file/i);
    assert.ok(!(await t.containers()).some((c) => c.Labels["tether.sandbox"] === err.id));
    assert.deepEqual(await t.sandboxDirs(), before);
  });

  test("a missing image: ImageNotFoundError naming it", async () => {
    const before = await t.sandboxDirs();
    const count = (await t.containers()).length;
    const err = await t.create("tether-test/no-such-image:nope").catch((e) => e);
    assert.ok(err instanceof ImageNotFoundError, String(err));
    assert.equal(err.image, "tether-test/no-such-image:nope");
    assert.match(err.message, /tether-test\/no-such-image:nope/);
    assert.equal((await t.containers()).length, count);
    assert.deepEqual(await t.sandboxDirs(), before);
  });

  test("an engine that is not there: EngineUnavailableError", async () => {
    const nowhere = new Sandboxes({
      docker: { docker: new Docker({ socketPath: path.join(emptyDir, "no-engine.sock") }), home: emptyDir },
    });
    const err = await nowhere.create(BUSYBOX).catch((e) => e);
    assert.ok(err instanceof EngineUnavailableError, String(err));
    assert.match(err.message, /no-engine\.sock/);
    // Listing still works from the registry; reconcile says why Docker was left out.
    assert.deepEqual(await nowhere.list(), []);
    const report = await nowhere.reconcile();
    assert.equal(report.skipped[0]?.backend, "docker");
    assert.match(report.skipped[0]?.reason ?? "", /no-engine\.sock/);
    nowhere.close();
  });
});
