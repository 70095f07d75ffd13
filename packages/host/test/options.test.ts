import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { connect } from "@tether/sdk";
import { AGENT_PIDS_SHARE, DEFAULT_MEMORY_BYTES, DEFAULT_PIDS_LIMIT } from "../src/backends/docker/container-config.js";
import { InvalidSandboxSpecError } from "../src/index.js";
import { engineSkipReason, eventually, TestSandboxes } from "./support/sandboxes.js";

const BUSYBOX = "tether-test/busybox";
const skip = await engineSkipReason([BUSYBOX]);
const t = new TestSandboxes();
let shared: string;
before(async () => {
  if (skip) return;
  await t.setup();
  shared = await mkdtemp(path.join(os.tmpdir(), "tether-host-mount-"));
});
after(async () => {
  await t.cleanup();
  if (shared) await rm(shared, { recursive: true, force: true });
});

/** Runs a shell line in a sandbox and returns its stdout, failing on a non-zero exit. */
async function sh(id: string, line: string, user?: string): Promise<string> {
  const agent = await t.connect(id, user);
  return (await agent.commands.run(["sh", "-c", line])).stdout;
}

/** The first readable cgroup file among v1 and v2 locations. */
function cgroupValue(id: string, files: string[]): Promise<string> {
  return sh(id, `for f in ${files.join(" ")}; do [ -r $f ] && { cat $f; exit 0; }; done; exit 1`).then((s) => s.trim());
}

describe("sandbox options", { skip }, () => {
  test("memory, pids and cpu limits are the container's cgroup limits", async () => {
    const info = await t.create(BUSYBOX, { memory: "96m", pidsLimit: 64, cpus: 0.5 });
    assert.equal(
      await cgroupValue(info.id, ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]),
      String(96 * 1024 * 1024),
    );
    // The agent's own threads come on top of what the sandbox's commands get.
    assert.equal(
      await cgroupValue(info.id, ["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]),
      String(64 + AGENT_PIDS_SHARE),
    );
    const cpu = await cgroupValue(info.id, [
      "/sys/fs/cgroup/cpu.max",
      "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
      "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
    ]);
    // v2: "50000 100000"; v1: the quota alone against the default 100000 period.
    assert.match(cpu, /^50000( 100000)?$/);
  });

  test("a pids limit below the agent's thread count: the agent lives, commands get their share", async () => {
    const info = await t.create(BUSYBOX, { pidsLimit: 3 });
    assert.equal(await sh(info.id, "sleep 0 & sleep 0 & wait; echo three"), "three\n");
    assert.equal((await t.sandboxes.get(info.id)).state, "running");
  });

  test("defaults: memory and pids limits, capabilities dropped, no new privileges; -u still switches", async () => {
    const info = await t.create(BUSYBOX);
    assert.equal(
      await cgroupValue(info.id, ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]),
      String(DEFAULT_MEMORY_BYTES),
    );
    assert.equal(
      await cgroupValue(info.id, ["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]),
      String(DEFAULT_PIDS_LIMIT + AGENT_PIDS_SHARE),
    );
    const status = await sh(info.id, "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status");
    const bounding = BigInt(`0x${/CapBnd:\s+([0-9a-f]+)/.exec(status)?.[1]}`);
    const has = (bit: number) => (bounding >> BigInt(bit)) & 1n;
    // CAP_NET_RAW 13, CAP_MKNOD 27, CAP_SYS_CHROOT 18 gone; CAP_SETUID 7, CAP_SETGID 6, CAP_KILL 5 kept.
    assert.deepEqual([13, 27, 18].map(has), [0n, 0n, 0n], status);
    assert.deepEqual([7, 6, 5].map(has), [1n, 1n, 1n], status);
    assert.match(status, /NoNewPrivs:\s+1/);
    assert.equal(await sh(info.id, "id -u", "nobody"), "65534\n");
  });

  test("network none: only loopback, still reachable over the socket", async () => {
    const info = await t.create(BUSYBOX, { network: "none" });
    assert.equal(info.endpoint?.url, undefined);
    assert.deepEqual((await sh(info.id, "ls /sys/class/net")).trim().split(/\s+/), ["lo"]);
  });

  test("network bridge: the agent also answers on the container's address, token required", async () => {
    const info = await t.create(BUSYBOX, { network: "bridge" });
    const url = info.endpoint?.url;
    assert.match(url ?? "", /^http:\/\/\d+\.\d+\.\d+\.\d+:49983$/);
    assert.ok((await sh(info.id, "ls /sys/class/net")).includes("eth0"));
    const status = await new Promise<number | undefined>((resolve) => {
      const req = http.get(`${url}/envs`, { agent: false, timeout: 5000 }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on("error", () => resolve(undefined));
    });
    assert.equal(status, 401);
    const agent = await connect({ url: url as string, accessToken: info.endpoint?.accessToken });
    try {
      assert.equal((await agent.commands.run(["echo", "over", "tcp"])).stdout, "over tcp\n");
    } finally {
      agent.close();
    }
  });

  test("read-only root: the image's files cannot be written, mounts still can", async () => {
    const info = await t.create(BUSYBOX, { readOnlyRootfs: true, mounts: [{ source: shared, target: "/shared" }] });
    const agent = await t.connect(info.id);
    const denied = await agent.commands.run(["sh", "-c", "touch /etc/new-file"]).catch((err) => err);
    assert.equal(denied.exitCode, 1);
    assert.match(denied.stderr, /Read-only file system/);
    await agent.commands.run(["sh", "-c", "echo via-mount > /shared/out"]);
    assert.equal(await readFile(path.join(shared, "out"), "utf8"), "via-mount\n");
  });

  test("a read-only mount cannot be written", async () => {
    await writeFile(path.join(shared, "given"), "from host\n");
    const info = await t.create(BUSYBOX, { mounts: [{ source: shared, target: "/given", readOnly: true }] });
    assert.equal(await sh(info.id, "cat /given/given"), "from host\n");
    const agent = await t.connect(info.id);
    const denied = await agent.commands.run(["sh", "-c", "echo x > /given/x"]).catch((err) => err);
    assert.match(denied.stderr, /Read-only file system/);
  });

  test("user: the default user of commands and of the image's command; the agent stays root", async () => {
    const info = await t.create(BUSYBOX, { user: "nobody", command: ["sh", "-c", "echo cmd-uid=$(id -u)"] });
    assert.equal(await sh(info.id, "id -u"), "65534\n");
    // The agent is root, so a request may still name another user.
    assert.equal(await sh(info.id, "id -u", "root"), "0\n");
    // The image's command starts once the agent listens: its line may still be on its way.
    const logs = await eventually(async () => {
      const text = await t.logs(info.id);
      return text.includes("cmd-uid=") ? text : undefined;
    }, "the command's log line");
    assert.match(logs, /cmd-uid=65534/);
  });

  test("env and workdir", async () => {
    const info = await t.create(BUSYBOX, { env: { GREETING: "hi there" }, workdir: "/tmp" });
    assert.equal(await sh(info.id, 'echo "$GREETING from $(pwd)"'), "hi there from /tmp\n");
  });

  test("labels: user labels are listed and filter list(); ours are reserved", async () => {
    const a = await t.create(BUSYBOX, { labels: { role: "a" }, name: `tether-test-named-${t.run.slice(0, 8)}` });
    const b = await t.create(BUSYBOX, { labels: { role: "b" } });
    assert.equal(a.labels.role, "a");
    const onlyA = await t.sandboxes.list({ labels: { role: "a", "tether-test.host": t.run } });
    assert.deepEqual(
      onlyA.map((s) => s.id),
      [a.id],
    );
    const all = (await t.sandboxes.list({ labels: { "tether-test.host": t.run } })).map((s) => s.id);
    assert.ok(all.includes(a.id) && all.includes(b.id));
    // Found by name too.
    assert.equal((await t.sandboxes.get(a.name)).id, a.id);
    const container = await t.docker.getContainer(a.backendId).inspect();
    assert.equal(container.Config.Labels["tether.sandbox"], a.id);
    assert.equal(container.Config.Labels["tether.managed-by"], "tether");
    await assert.rejects(t.create(BUSYBOX, { labels: { "tether.sandbox": "x" } }), InvalidSandboxSpecError);
  });

  test("bad specs are refused before anything is created", async () => {
    const before = (await t.containers()).length;
    await assert.rejects(t.create(BUSYBOX, { memory: "lots" }), InvalidSandboxSpecError);
    await assert.rejects(t.create(BUSYBOX, { workdir: "relative" }), InvalidSandboxSpecError);
    await assert.rejects(t.create(BUSYBOX, { runtime: "no-such-runtime" }), /runtime no-such-runtime is not available/);
    assert.equal((await t.containers()).length, before);
  });
});
