import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, realpath, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Docker from "dockerode";
import {
  DockerBackend,
  INTERRUPTED_CREATE,
  LocalBackend,
  processIdentity,
  Sandboxes,
  type SandboxInfo,
  startExpiryLoop,
  VANISHED,
} from "../src/index.js";
import { scratchHome } from "./support/backends.js";
import { engineSkipReason, eventually, TEST_BUNDLE, TEST_LABEL, testBundle } from "./support/sandboxes.js";

const BUSYBOX = "tether-test/busybox";
const dockerSkip = await engineSkipReason([BUSYBOX]);
const docker = new Docker();
const run = `registry-${process.pid}`;

let scratch: Awaited<ReturnType<typeof scratchHome>>;
const facades: Sandboxes[] = [];
/** A fresh facade over the scratch home, as a new `tether` process would have. */
function open(): Sandboxes {
  const s = new Sandboxes({ home: scratch.home, docker: TEST_BUNDLE });
  facades.push(s);
  return s;
}
before(async () => {
  scratch = await scratchHome("tether-lifecycle-test-");
});
after(async () => {
  const s = open();
  for (const info of await s.list({ states: ["creating", "running", "paused", "stopped", "error"] })) {
    await s.remove(info.id).catch(() => {});
  }
  // Without an engine there are no containers to remove (and asking would throw).
  const containers = dockerSkip
    ? []
    : await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${run}`] } });
  for (const c of containers) {
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch(() => {});
  }
  for (const f of facades) f.close();
  await scratch.remove();
});

const labels = { [TEST_LABEL]: run };

/** The identity of a process that has exited: what a creator killed mid-create leaves. */
function deadProcess() {
  const child = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  const pid = Number(child.stdout.trim());
  return { pid, start: "gone:0" };
}

describe("reconcile", () => {
  test("adopts sandboxes made behind the registry's back (docker and local)", { skip: dockerSkip }, async () => {
    const behind = await new DockerBackend({ home: scratch.home, ...TEST_BUNDLE }).create({
      image: BUSYBOX,
      labels,
    });
    const local = await new LocalBackend({ home: scratch.home }).create({ image: "", labels });
    const s = open();
    const report = await s.reconcile();
    assert.ok(report.adopted.includes(behind.id), JSON.stringify(report));
    assert.ok(report.adopted.includes(local.id), JSON.stringify(report));
    const record = s.registry?.get(behind.id);
    assert.equal(record?.state, "running");
    assert.equal(record?.backend, "docker");
    assert.ok(record?.metadata.adopted);
    assert.equal(s.registry?.get(local.id)?.backend, "local");
    const agent = await s.connect(behind.id);
    assert.equal((await agent.commands.run(["echo", "adopted"])).stdout, "adopted\n");
    agent.close();
    // A second reconcile finds nothing new.
    assert.deepEqual((await open().reconcile()).adopted, []);
  });

  test("marks sandboxes removed behind its back, and fixes drifted states", { skip: dockerSkip }, async () => {
    const s = open();
    const gone = await s.create(BUSYBOX, { labels });
    const drifted = await s.create(BUSYBOX, { labels });
    const localGone = await s.create(undefined, { backend: "local", labels });
    await docker.getContainer(gone.backendId).remove({ force: true });
    await docker.getContainer(drifted.backendId).stop({ t: 1 });
    // The local sandbox's processes killed and its directory deleted, as a careless `rm -rf` would.
    await new LocalBackend({ home: scratch.home }).remove(localGone.id);

    const later = open();
    const report = await later.reconcile();
    assert.ok(report.vanished.includes(gone.id), JSON.stringify(report));
    assert.ok(report.vanished.includes(localGone.id), JSON.stringify(report));
    assert.deepEqual(
      report.fixed.find((f) => f.id === drifted.id),
      { id: drifted.id, from: "running", to: "stopped" },
    );
    assert.equal(later.registry?.get(gone.id)?.state, "error");
    assert.equal(later.registry?.get(gone.id)?.error, VANISHED);
    assert.equal(later.registry?.get(drifted.id)?.state, "stopped");
    const listed = await later.list();
    assert.equal(listed.find((i) => i.id === gone.id)?.state, "error");
    assert.equal((await later.get(gone.id)).error, VANISHED);
    // rm forgets a vanished sandbox.
    await later.remove(gone.id);
    assert.equal(later.registry?.get(gone.id), undefined);
  });

  /** A local sandbox made through `s` whose agent was then SIGKILLed (no one told); its agent's pid. */
  async function localSandboxWithKilledAgent(s: Sandboxes): Promise<{ info: SandboxInfo; agentPid: number }> {
    const info = await s.create(undefined, { backend: "local", labels });
    const supervisor = JSON.parse(
      await readFile(path.join(scratch.home, "sandboxes", info.id, "supervisor.json"), "utf8"),
    );
    process.kill(supervisor.agentPid, "SIGKILL");
    return { info, agentPid: supervisor.agentPid };
  }

  test("a local sandbox whose agent was killed is found stopped", async () => {
    const { info } = await localSandboxWithKilledAgent(open());
    await eventually(async () => ((await open().get(info.id)).state === "stopped" ? true : undefined), "stopped");
    assert.equal(open().registry?.get(info.id)?.state, "stopped");
  });

  test("recorded answers from the registry alone: a sandbox that died unseen keeps its recorded state", async () => {
    const s = open();
    const { info, agentPid } = await localSandboxWithKilledAgent(s);
    await eventually(async () => (spawnSync("kill", ["-0", String(agentPid)]).status !== 0 ? true : undefined), "gone");
    // No backend was asked (the local one would have found the agent gone)...
    const recorded = (await s.recorded({ states: ["running"] })).filter((r) => r.id === info.id);
    assert.deepEqual(
      recorded.map((r) => r.state),
      ["running"],
    );
    // ...where a listing (here another process's) asks, and records what it found.
    await eventually(
      async () => ((await open().list()).find((r) => r.id === info.id)?.state === "stopped" ? true : undefined),
      "listed stopped",
    );
    assert.deepEqual(
      (await s.recorded({ states: ["running"] })).filter((r) => r.id === info.id),
      [],
    );
  });
  test("creations whose process died: nothing made -> error; made -> kept; creator alive -> left alone", async () => {
    const s = open();
    const registry = s.registry as NonNullable<typeof s.registry>;
    const base = { backend: "local", image: "host", state: "creating" as const, labels };
    registry.insert({ ...base, id: "deadcreate01", name: "deadcreate01", creator: deadProcess() });
    registry.insert({ ...base, id: "deadcreate02", name: "deadcreate02", creator: deadProcess() });
    await new LocalBackend({ home: scratch.home }).create({ image: "", id: "deadcreate02", labels });
    const self = processIdentity(process.pid);
    registry.insert({ ...base, id: "livecreate01", name: "livecreate01", creator: self });

    const report = await open().reconcile();
    assert.deepEqual(
      report.interrupted.filter((i) => i.id.includes("create")).sort((a, b) => a.id.localeCompare(b.id)),
      [
        { id: "deadcreate01", outcome: "error" },
        { id: "deadcreate02", outcome: "running" },
      ],
    );
    assert.equal(registry.get("deadcreate01")?.error, INTERRUPTED_CREATE);
    assert.equal(registry.get("deadcreate02")?.state, "running");
    assert.equal(registry.get("livecreate01")?.state, "creating");
    registry.delete("livecreate01");
  });
});

describe("timeouts", () => {
  test("absolute timeout, action stop: stopped by the next expiry pass", async () => {
    const s = open();
    const info = await s.create(undefined, { backend: "local", labels, timeoutMs: 30_000 });
    const expiresAt = info.expiresAt?.getTime() ?? 0;
    assert.ok(expiresAt > Date.now());
    assert.deepEqual(await s.expire(), []);
    // An expiry pass just after the deadline (this one's clock is told the time).
    const expired = await open().expire(expiresAt + 1);
    assert.deepEqual(expired, [{ id: info.id, reason: "timeout", action: "stop" }]);
    assert.equal((await open().get(info.id)).state, "stopped");
    // Started again, the timeout counts from now.
    const started = await open().start(info.id);
    assert.ok((started.expiresAt?.getTime() ?? 0) > Date.now() + 20_000);
    await open().remove(info.id);
  });

  test("the absolute timeout counts from when the sandbox is ready, not from when its creation began", async () => {
    const s = open();
    const info = await s.create(undefined, { backend: "local", labels, timeoutMs: 30_000 });
    const started =
      s.registry
        ?.events(info.id)
        .find((e) => e.kind === "started")
        ?.at.getTime() ?? 0;
    // The agent's start takes a while: the two moments are told apart.
    assert.ok(started - info.createdAt.getTime() >= 20, `created at ${info.createdAt.getTime()}, started ${started}`);
    const expiresAt = info.expiresAt?.getTime() ?? 0;
    assert.ok(Math.abs(expiresAt - (started + 30_000)) <= 5, `expires ${expiresAt}, started ${started}`);
    assert.equal(open().registry?.get(info.id)?.expiresAt?.getTime(), expiresAt);
    await open().remove(info.id);
  });

  test("absolute timeout, action remove: sandbox and record gone", async () => {
    const s = open();
    const info = await s.create(undefined, { backend: "local", labels, timeoutMs: 500, onExpiry: "remove" });
    // A real wait: the deadline passes on its own.
    await new Promise((r) => setTimeout(r, Math.max(0, (info.expiresAt?.getTime() ?? 0) - Date.now()) + 50));
    assert.deepEqual(await open().expire(), [{ id: info.id, reason: "timeout", action: "remove" }]);
    assert.equal(open().registry?.get(info.id), undefined);
    assert.equal(await stat(path.join(scratch.home, "sandboxes", info.id)).catch(() => undefined), undefined);
    assert.ok(s.registry?.events(info.id).some((e) => e.kind === "expired"));
  });

  test("idle timeout: a streaming command keeps it busy; once idle it is stopped", async () => {
    const s = open();
    const info = await s.create(undefined, { backend: "local", labels, idleTimeoutMs: 1500 });
    const agent = await s.connect(info.id);
    const long = agent.commands.run(["sleep", "3"]);
    await new Promise((r) => setTimeout(r, 2000));
    // The host's clock says idle, the agent says a request is in flight.
    assert.deepEqual(await open().expire(), []);
    await long;
    agent.close();
    // Just finished: the agent's last activity is the stream's end.
    assert.deepEqual(await open().expire(), []);
    // Idle long enough (this pass is told a later time; the agent's clock is the real one).
    assert.deepEqual(await open().expire(Date.now() + 1600), [{ id: info.id, reason: "idle", action: "stop" }]);
    assert.equal(open().registry?.get(info.id)?.state, "stopped");
  });

  test("host-side use counts as activity", async () => {
    const s = open();
    const info = await s.create(undefined, { backend: "local", labels, idleTimeoutMs: 60_000, onExpiry: "remove" });
    const before = s.registry?.get(info.id)?.lastUsedAt.getTime() ?? 0;
    await new Promise((r) => setTimeout(r, 20));
    (await open().connect(info.id)).close();
    assert.ok((open().registry?.get(info.id)?.lastUsedAt.getTime() ?? 0) > before);
    // A pass far in the future: idle by then.
    assert.deepEqual(await open().expire(Date.now() + 120_000), [{ id: info.id, reason: "idle", action: "remove" }]);
  });

  test("startExpiryLoop enforces timeouts without any CLI call", async () => {
    const s = open();
    const info = await s.create(undefined, { backend: "local", labels, timeoutMs: 300 });
    const seen: string[] = [];
    const loop = startExpiryLoop(open(), { intervalMs: 100, onExpired: (e) => seen.push(...e.map((x) => x.id)) });
    try {
      await eventually(async () => (seen.includes(info.id) ? true : undefined), "the loop to expire it");
    } finally {
      loop.stop();
    }
    assert.equal(open().registry?.get(info.id)?.state, "stopped");
  });
});

describe("gc", () => {
  test("archives stopped sandboxes: work directory and output kept under archive/<date>-<id>", async () => {
    const s = open();
    const info: SandboxInfo = await s.create(undefined, {
      backend: "local",
      labels,
      command: ["sh", "-c", "echo from-the-command; sleep 600"],
    });
    const agent = await s.connect(info.id);
    const pwd = (await agent.commands.run(["pwd"])).stdout.trim();
    await agent.files.write(`${pwd}/result.txt`, "keep me\n");
    agent.close();
    const fresh = await s.create(undefined, { backend: "local", labels });
    await s.stop(info.id, { timeoutSeconds: 2 });
    await s.stop(fresh.id, { timeoutSeconds: 2 });
    // Nothing is old enough yet.
    assert.deepEqual((await open().gc()).archived, []);
    const report = await open().gc({ olderThanMs: 0 });
    const entry = report.archived.find((a) => a.id === info.id);
    assert.ok(entry, JSON.stringify(report));
    const date = new Date().toISOString().slice(0, 10);
    assert.equal(entry.path, path.join(scratch.home, "archive", `${date}-${info.id}`));
    assert.equal(await readFile(path.join(entry.path, "work", "result.txt"), "utf8"), "keep me\n");
    assert.match(await readFile(path.join(entry.path, "output.log"), "utf8"), /from-the-command/);
    const saved = JSON.parse(await readFile(path.join(entry.path, "sandbox.json"), "utf8"));
    assert.equal(saved.record.state, "archived");
    assert.equal(await stat(path.join(scratch.home, "sandboxes", info.id)).catch(() => undefined), undefined);
    const later = open();
    assert.equal(later.registry?.get(info.id)?.state, "archived");
    assert.ok(!(await later.list()).some((i) => i.id === info.id));
    const archived = await later.list({ states: ["archived"] });
    assert.equal(archived.find((i) => i.id === info.id)?.archivePath, entry.path);
  });

  test("removes agent bundles that no container mounts and no create used lately; a removed one is built again", {
    skip: dockerSkip,
  }, async () => {
    // A bundle root of its own: the test bundle hard-linked in (instant), and an older bundle.
    const root = await realpath(await mkdtemp(path.join(os.tmpdir(), "tether-bundle-root-")));
    try {
      const current = path.join(root, path.basename((await testBundle()).dir));
      execFileSync("cp", ["-al", (await testBundle()).dir, current]);
      const stale = path.join(root, "0123456789abcdef");
      await mkdir(stale);
      await writeFile(
        path.join(stale, "manifest.json"),
        JSON.stringify({ format: 1, contentHash: `${path.basename(stale)}${"0".repeat(48)}`, size: 77, files: [] }),
      );
      const s = new Sandboxes({ home: scratch.home, docker: { bundleRoot: root } });
      facades.push(s);
      const info = await s.create(BUSYBOX, { labels, runCommand: false });
      const monthAgo = new Date(Date.now() - 30 * 24 * 3600 * 1000);
      for (const dir of [current, stale]) await utimes(dir, monthAgo, monthAgo);

      // The running sandbox mounts the current bundle: only the other goes.
      let report = await s.gc({ olderThanMs: 0 });
      assert.deepEqual(report.bundles, { removed: [{ dir: stale, bytes: 77 }] });
      assert.ok(existsSync(path.join(current, "manifest.json")));
      assert.ok(!existsSync(stale));

      // Once no container mounts it and no create used it for long enough, it goes too.
      await s.remove(info.id);
      await utimes(current, monthAgo, monthAgo);
      report = await s.gc({ olderThanMs: 0 });
      assert.deepEqual(
        report.bundles?.removed.map((b) => b.dir),
        [current],
      );
      assert.ok(!existsSync(current));

      // This facade had built that bundle: its next create builds it again.
      const again = await s.create(BUSYBOX, { labels, runCommand: false });
      assert.ok(existsSync(path.join(current, "manifest.json")));
      await s.remove(again.id);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test("archives a stopped docker sandbox: container removed, output kept", { skip: dockerSkip }, async () => {
    const s = open();
    const info = await s.create(BUSYBOX, { labels, command: ["sh", "-c", "echo docker-said-this; sleep 600"] });
    await eventually(async () => {
      let text = "";
      for await (const c of s.logs(info.id)) text += c.data;
      return text.includes("docker-said-this") ? true : undefined;
    }, "output");
    await s.stop(info.id, { timeoutSeconds: 1 });
    const report = await open().gc({ olderThanMs: 0 });
    const entry = report.archived.find((a) => a.id === info.id);
    assert.ok(entry, JSON.stringify(report));
    assert.match(await readFile(path.join(entry.path, "output.log"), "utf8"), /docker-said-this/);
    await assert.rejects(docker.getContainer(info.backendId).inspect(), /no such container/i);
  });
});
