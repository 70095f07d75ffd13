/**
 * The vm backend booting real QEMU microVMs (under TCG here: seconds per boot, so one VM
 * does everything: exec, copies, pause/resume with memory, two forks of its snapshot, a
 * killed QEMU noticed by reconcile, remove),
 * and the QMP client against a QEMU that boots nothing (cheap).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { connect } from "@tether/sdk";
import { allocateTap, releaseAddress } from "../src/backends/vm/tap-network.js";
import {
  findVmTools,
  QmpClient,
  QmpCommandError,
  QmpConnectionError,
  removeBridge,
  Sandboxes,
  TAP_BRIDGE,
  tapName,
  tapSupport,
  VmBackend,
  VmToolsMissingError,
} from "../src/index.js";
import { scratchHome } from "./support/backends.js";
import { engineSkipReason, testBundle } from "./support/sandboxes.js";

const BUSYBOX = "tether-test/busybox";
/** Disks and the initramfs, shared by test runs (each is named by its content). */
const CACHE_DIR = path.join(os.tmpdir(), "tether-test-vm-cache");

/** Why VM tests cannot run here, or undefined; in CI the tools must be there. */
async function vmSkipReason(): Promise<string | undefined> {
  try {
    await findVmTools();
    return undefined;
  } catch (err) {
    if (!(err instanceof VmToolsMissingError)) throw err;
    if (process.env.CI === "true") throw new Error(`CI needs the vm backend's tools: ${err.message}`);
    console.log(`# skipping vm tests: ${err.message}`);
    return err.message;
  }
}

const toolsSkip = await vmSkipReason();
const skip = toolsSkip ?? (await engineSkipReason([BUSYBOX]));

describe("QmpClient against a real QEMU (no guest booted)", { skip: toolsSkip }, () => {
  let dir: string;
  let qemu: ReturnType<typeof spawn> | undefined;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "tether-qmp-test-"));
    const tools = await findVmTools();
    const socket = path.join(dir, "qmp.sock");
    // -S: the machine is made and never run; QMP answers at once.
    qemu = spawn(
      tools.qemu,
      ["-M", "microvm", "-S", "-nodefaults", "-display", "none", "-qmp", `unix:${socket},server=on,wait=off`],
      {
        stdio: "ignore",
      },
    );
    for (let i = 0; i < 200 && !(await stat(socket).catch(() => undefined)); i++)
      await new Promise((r) => setTimeout(r, 25));
  });
  after(async () => {
    qemu?.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  test("negotiates, answers typed commands, reports errors by class, and sees QEMU quit", async () => {
    const qmp = await QmpClient.connect(path.join(dir, "qmp.sock"));
    assert.ok(qmp.version && qmp.version.major >= 7, `a QEMU version in the greeting: ${JSON.stringify(qmp.version)}`);
    const status = await qmp.execute("query-status", {});
    assert.equal(status.running, false);
    assert.equal(status.status, "prelaunch");
    const migration = await qmp.execute("query-migrate", {});
    assert.equal(migration.status, undefined);
    // A bad argument is QEMU's GenericError, carried with the command's name.
    await assert.rejects(qmp.execute("migrate", { uri: "nonsense:" }), (err: unknown) => {
      assert.ok(err instanceof QmpCommandError);
      assert.equal(err.command, "migrate");
      assert.equal(err.errorClass, "GenericError");
      return true;
    });
    const shutdown = qmp.waitForEvent("SHUTDOWN", 10_000);
    await qmp.execute("quit", {});
    assert.equal((await shutdown).event, "SHUTDOWN");
    await qmp.closed();
    // QEMU ending the session may close or reset the socket: either way a typed connection error.
    await assert.rejects(qmp.execute("query-status", {}), QmpConnectionError);
  });
});

describe("a vm sandbox from the busybox image (QEMU microvm)", { skip }, () => {
  let scratch: { home: string; remove(): Promise<void> };
  let sandboxes: Sandboxes;
  let backend: VmBackend;
  before(async () => {
    if (skip) return;
    scratch = await scratchHome("tether-vm-test-");
    backend = new VmBackend({ home: scratch.home, bundle: testBundle, cacheDir: CACHE_DIR });
    sandboxes = new Sandboxes({ home: scratch.home, backend });
  });
  after(async () => {
    if (skip) return;
    for (const info of await backend.list()) await backend.remove(info.id).catch(() => {});
    sandboxes.close();
    await scratch.remove();
  });

  test("boots, runs commands, copies files, pauses with its memory to disk and resumes with its processes, is removed", async () => {
    const info = await sandboxes.create(BUSYBOX, { memory: "256m", pidsLimit: 40, labels: { test: "vm" } });
    assert.equal(info.backend, "vm");
    assert.equal(info.state, "running");
    const dir = path.join(scratch.home, "sandboxes", info.id);
    // Nothing of the token is readable by others on the host.
    for (const file of ["token", "config.img"]) {
      assert.equal((await stat(path.join(dir, file))).mode & 0o077, 0, `${file} is private`);
    }

    const agent = await sandboxes.connect(info.id);
    try {
      const uname = await agent.commands.run(["sh", "-c", "uname -s; cat /proc/1/cmdline | tr '\\0' ' '"]);
      assert.match(uname.stdout, /^Linux\n\/\.tether\/vm-init\/tini -- .*tetherd\.js/);
      // A guest kernel of its own, not the host's.
      const kernel = await agent.commands.run(["uname", "-r"]);
      assert.equal(kernel.stdout.trim(), (await findVmTools()).kernel.version);
      const failed = await agent.commands.run(["sh", "-c", "exit 3"]).catch((err: { exitCode?: number }) => err);
      assert.equal((failed as { exitCode?: number }).exitCode, 3);
      // The pids limit, as Docker's: the spec's 40 plus the agent's share. A shell starting 80
      // sleeps fails to fork (busybox sh then exits 2); they end on their own, the agent answers.
      const cgroup = "/sys/fs/cgroup/sandbox";
      assert.equal((await agent.commands.run(["cat", `${cgroup}/pids.max`])).stdout.trim(), "64");
      const bomb = await agent.commands
        .run(["sh", "-c", "for i in $(seq 80); do sleep 3 & done"])
        .catch((err: { exitCode?: number; stderr?: string }) => err);
      assert.equal((bomb as { exitCode?: number }).exitCode, 2);
      assert.match((bomb as { stderr?: string }).stderr ?? "", /can't fork/);
      await delay(3500);
      assert.equal((await agent.commands.run(["echo", "still here"])).stdout, "still here\n");
      // Network none (the default): the guest reaches neither this machine's address nor its
      // loopback (10.0.2.2 in QEMU's user-mode network), where servers here answer.
      const [outside, loopback] = await Promise.all([listenOnce("0.0.0.0"), listenOnce("127.0.0.1")]);
      try {
        const targets = [`10.0.2.2 ${loopback.port}`, `10.0.2.2 ${outside.port}`];
        const address = hostAddress();
        if (address) targets.push(`${address} ${outside.port}`);
        for (const target of targets) {
          const reached = await agent.commands
            .run(["sh", "-c", `nc -w 3 ${target} </dev/null`])
            .catch((err: { stdout?: string }) => err);
          assert.equal((reached as { stdout?: string }).stdout, "", `nothing answers at ${target}`);
        }
        assert.equal(outside.accepted + loopback.accepted, 0);
      } finally {
        outside.close();
        loopback.close();
      }
      // A process that outlives the pause, and a file written before it.
      await agent.commands.run([
        "sh",
        "-c",
        "sleep 100000 >/dev/null 2>&1 & echo $! > /root/sleep.pid; echo before > /root/mark",
      ]);
    } finally {
      agent.close();
    }

    // Copies stream through the agent (no directory is shared with a VM).
    const local = await mkdtemp(path.join(os.tmpdir(), "tether-vm-copy-"));
    try {
      await writeFile(path.join(local, "in.txt"), "copied in\n");
      const copy = await sandboxes.copier(info.id);
      try {
        await copy.in(path.join(local, "in.txt"), "/root/in.txt");
        await copy.out("/root/in.txt", path.join(local, "out.txt"));
      } finally {
        await copy.close();
      }
      assert.equal(await readFile(path.join(local, "out.txt"), "utf8"), "copied in\n");
    } finally {
      await rm(local, { recursive: true, force: true });
    }

    const before = await sandboxes.connect(info.id);
    const pid = (await before.commands.run(["cat", "/root/sleep.pid"])).stdout.trim();
    before.close();

    await sandboxes.pause(info.id);
    assert.equal((await sandboxes.get(info.id)).state, "paused");
    const snapshot = await stat(path.join(dir, "snapshot"));
    assert.equal(snapshot.mode & 0o077, 0, "the snapshot is private");
    const record = await backend.pauseRecord(info.id);
    assert.ok(record && record.snapshotBytes === snapshot.size && snapshot.size > 0);
    console.log(`# pause: a ${(snapshot.size / 2 ** 20).toFixed(0)} MiB snapshot written in ${record?.writeMs} ms`);

    // A memory snapshot of the paused VM, forked twice in parallel: both go on with the
    // sleep started before the pause, each on its own disk, token and machine-id.
    const tag = "tether-snapshot/vm-test:latest";
    await sandboxes.snapshot(info.id, tag);
    assert.equal((await sandboxes.get(info.id)).state, "paused", "a paused source stays paused");
    const forked = Date.now();
    const forks = await Promise.all([
      sandboxes.create(tag, { backend: "vm", labels: { test: "vm" } }),
      sandboxes.create(tag, { backend: "vm", labels: { test: "vm" } }),
    ]);
    console.log(`# two forks restored in parallel in ${Date.now() - forked} ms`);
    const sourceToken = (await readFile(path.join(dir, "token"), "utf8")).trim();
    const machineIds: string[] = [];
    for (const [i, fork] of forks.entries()) {
      assert.equal(fork.state, "running");
      assert.notEqual(fork.id, info.id);
      const agent = await sandboxes.connect(fork.id);
      try {
        const seen = await agent.commands.run([
          "sh",
          "-c",
          `cat /root/mark; tr '\\0' ' ' < /proc/${pid}/cmdline; echo; cat /etc/machine-id; hostname; echo fork${i} > /root/mine; cat /root/mine`,
        ]);
        const [mark, cmdline, machineId, hostname, mine] = seen.stdout.split("\n");
        assert.equal(mark, "before");
        assert.equal(cmdline.trim(), "sleep 100000", `fork ${fork.id} has the sleep, pid ${pid}`);
        assert.match(machineId, /^[0-9a-f]{32}$/);
        machineIds.push(machineId);
        assert.equal(hostname, fork.id);
        assert.equal(mine, `fork${i}`);
      } finally {
        agent.close();
      }
      // The restored agent took the fork's own token: its source's no longer opens it.
      assert.notEqual(fork.endpoint?.accessToken, sourceToken);
      await assert.rejects(
        connect({ socket: fork.endpoint?.socket ?? "", accessToken: sourceToken }).then(async (a) => {
          try {
            await a.commands.run(["true"]);
          } finally {
            a.close();
          }
        }),
      );
    }
    assert.notEqual(machineIds[0], machineIds[1], "each fork has its own machine-id");
    // Each wrote into its own overlay: the other fork does not see it.
    const first = await sandboxes.connect(forks[0].id);
    assert.equal((await first.commands.run(["cat", "/root/mine"])).stdout, "fork0\n");
    first.close();
    assert.equal(await backend.removeSnapshot(tag), false, "a snapshot its forks' disks are over stays");
    await Promise.all(forks.map((fork) => sandboxes.remove(fork.id)));
    assert.equal(await backend.removeSnapshot(tag), false, "and so while its source's disk is over it");

    const resumeStarted = Date.now();
    await sandboxes.unpause(info.id);
    console.log(`# resume to the agent answering: ${Date.now() - resumeStarted} ms`);
    assert.equal((await sandboxes.get(info.id)).state, "running");
    await assert.rejects(stat(path.join(dir, "snapshot")), { code: "ENOENT" });
    const after = await sandboxes.connect(info.id);
    try {
      const check = await after.commands.run([
        "sh",
        "-c",
        `cat /root/mark; tr '\\0' ' ' < /proc/${pid}/cmdline; echo; date +%s`,
      ]);
      const [mark, cmdline, seconds] = check.stdout.split("\n");
      assert.equal(mark, "before");
      assert.equal(cmdline.trim(), "sleep 100000", `the sleep is still pid ${pid}`);
      // The clock was set from the host's after the restore (a minute of slack for a loaded machine).
      assert.ok(Math.abs(Number(seconds) - Date.now() / 1000) < 60, `guest clock ${seconds}`);
    } finally {
      after.close();
    }

    // The source wrote nothing into what its forks saw, nor they into it.
    const source = await sandboxes.connect(info.id);
    await assert.rejects(source.commands.run(["cat", "/root/mine"]));
    source.close();

    // A QEMU killed behind our back: the sandbox reads as stopped, and reconcile records it.
    const launch = JSON.parse(await readFile(path.join(dir, "supervisor.json"), "utf8")) as { agentPid: number };
    process.kill(launch.agentPid, "SIGKILL");
    for (let i = 0; i < 100 && (await backend.inspect(info.id)).state === "running"; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal((await backend.inspect(info.id)).state, "stopped");
    const report = await sandboxes.reconcile();
    assert.deepEqual(
      report.fixed.filter((f) => f.id === info.id),
      [{ id: info.id, from: "running", to: "stopped" }],
    );
    const listed = (await sandboxes.list()).find((s) => s.id === info.id);
    assert.equal(listed?.state, "stopped", "tether ls shows it stopped");

    await sandboxes.remove(info.id);
    await assert.rejects(stat(dir), { code: "ENOENT" });
    assert.equal(await backend.removeSnapshot(tag), true, "with no disk over it, the snapshot goes");
    assert.equal(await backend.findSnapshot(tag), undefined);
  });
});

/** Why the TAP test cannot run here, or undefined; in CI it must. */
async function tapSkipReason(): Promise<string | undefined> {
  if (skip) return skip;
  const support = await tapSupport();
  if (support.ok) return undefined;
  if (process.env.CI === "true") throw new Error(`CI needs TAP networking for the vm test: ${support.reason}`);
  console.log(`# skipping the vm TAP test: ${support.reason}`);
  return support.reason;
}
const tapSkip = await tapSkipReason();

/** `ip` and friends, as root (the TAP test's own network namespace and veth). */
function sh(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("a vm sandbox with network bridge on TAP (Tether's bridge)", { skip: tapSkip }, () => {
  // An "outside host": a network namespace of this test's, reached over a veth pair
  // (198.18.0.0/15 is for benchmarks: no route here uses it), a line server in it.
  const netns = `tether-tap-test-${process.pid}`;
  const veth = `ttvo${process.pid}`.slice(0, 15);
  const outsideAddress = "198.18.77.2";
  let outside: ReturnType<typeof spawn> | undefined;
  let scratch: { home: string; remove(): Promise<void> };
  let sandboxes: Sandboxes;
  let backend: VmBackend;
  before(async () => {
    if (tapSkip) return;
    sh("ip", ["netns", "add", netns]);
    sh("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    sh("ip", ["addr", "add", "198.18.77.1/30", "dev", veth]);
    sh("ip", ["link", "set", veth, "up"]);
    sh("ip", ["-n", netns, "addr", "add", `${outsideAddress}/30`, "dev", "eth0"]);
    sh("ip", ["-n", netns, "link", "set", "eth0", "up"]);
    sh("ip", ["-n", netns, "link", "set", "lo", "up"]);
    outside = spawn(
      "ip",
      [
        "netns",
        "exec",
        netns,
        process.execPath,
        "-e",
        `require("net").createServer((s) => s.end("from-outside " + s.remoteAddress + "\\n")).listen(8080, "${outsideAddress}", () => console.log("listening"))`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await once(outside.stdout as NodeJS.ReadableStream, "data");
    scratch = await scratchHome("tether-vm-tap-test-");
    backend = new VmBackend({ home: scratch.home, bundle: testBundle, cacheDir: CACHE_DIR });
    sandboxes = new Sandboxes({ home: scratch.home, backend });
  });
  after(async () => {
    if (tapSkip) return;
    for (const info of (await backend?.list()) ?? []) await backend.remove(info.id).catch(() => {});
    sandboxes?.close();
    await scratch?.remove();
    outside?.kill("SIGKILL");
    // The veth first: deleting it takes its peer out of the namespace. Deleting the
    // namespace first removes the pair too, but asynchronously, so a `link del` after
    // it races the kernel (CI lost that race once).
    execFileSync("ip", ["link", "del", veth], { stdio: "ignore" });
    execFileSync("ip", ["netns", "del", netns], { stdio: "ignore" });
    // Tether's bridge and chains: gone unless a VM is on them (another test's, which cleans up last).
    await removeBridge();
  });

  test("reaches an outside host through NAT, not this machine (loopback, bridge address, own address) nor other VMs; its TAP goes with it", async () => {
    const info = await sandboxes.create(BUSYBOX, { memory: "256m", network: "bridge", labels: { test: "vm-tap" } });
    assert.equal(info.vmNetwork, "tap");
    const tap = tapName(info.id);
    assert.equal(
      (await readFile(`/sys/class/net/${tap}/master/uevent`, "utf8")).match(/INTERFACE=(\S+)/)?.[1],
      TAP_BRIDGE,
    );
    assert.match(sh("bridge", ["-d", "link", "show", "dev", tap]), /isolated on/);
    const gateway = /inet (\d+\.\d+\.\d+\.\d+)/.exec(sh("ip", ["-4", "addr", "show", "dev", TAP_BRIDGE]))?.[1];
    assert.ok(gateway, "the bridge has an address");
    const [loopback, onBridge, anywhere] = await Promise.all([
      listenOnce("127.0.0.1"),
      listenOnce(gateway),
      listenOnce("0.0.0.0"),
    ]);
    const agent = await sandboxes.connect(info.id);
    try {
      const nc = async (target: string) =>
        (
          (await agent.commands
            .run(["sh", "-c", `nc -w 3 ${target} </dev/null`])
            .catch((err: { stdout?: string }) => err)) as { stdout?: string }
        ).stdout;
      // Out through NAT: the outside host sees this machine's veth address, not the guest's.
      assert.equal(await nc(`${outsideAddress} 8080`), "from-outside 198.18.77.1\n");
      const targets = [
        `10.0.2.2 ${loopback.port}`,
        `${gateway} ${onBridge.port}`,
        `${gateway} ${anywhere.port}`,
        `10.0.2.2 ${anywhere.port}`,
      ];
      const address = hostAddress();
      if (address) targets.push(`${address} ${anywhere.port}`);
      for (const target of targets) assert.equal(await nc(target), "", `nothing answers at ${target}`);
      assert.equal(loopback.accepted + onBridge.accepted + anywhere.accepted, 0);
    } finally {
      agent.close();
      loopback.close();
      onBridge.close();
      anywhere.close();
    }

    // A server in the guest, for a fork to try (VMs on the bridge are isolated ports).
    const served = await sandboxes.connect(info.id);
    await served.commands.run([
      "sh",
      "-c",
      "mkdir -p /www && echo from-the-source > /www/index.html && httpd -p 9000 -h /www",
    ]);
    served.close();

    // Pause ends QEMU (and its TAP); a snapshot of it is forked: the fork restored with a TAP
    // of its own, its NIC given its own MAC and address. Resume brings the source's TAP back.
    await sandboxes.pause(info.id);
    await assert.rejects(stat(`/sys/class/net/${tap}`), { code: "ENOENT" });
    const tag = "tether-snapshot/vm-tap-test:latest";
    await sandboxes.snapshot(info.id, tag);
    const fork = await sandboxes.create(tag, { backend: "vm", network: "bridge", labels: { test: "vm-tap" } });
    assert.equal(fork.vmNetwork, "tap");
    await sandboxes.unpause(info.id);
    const addressOf = async (id: string) =>
      (
        JSON.parse(await readFile(path.join(scratch.home, "sandboxes", id, "sandbox.json"), "utf8")) as {
          tap: { address: string; mac: string };
        }
      ).tap;
    const [sourceTap, forkTap] = await Promise.all([addressOf(info.id), addressOf(fork.id)]);
    assert.notEqual(forkTap.address, sourceTap.address);
    assert.notEqual(forkTap.mac, sourceTap.mac);
    const sourceIp = sourceTap.address.split("/")[0];
    for (const [id, own] of [
      [info.id, sourceTap],
      [fork.id, forkTap],
    ] as const) {
      const agent = await sandboxes.connect(id);
      try {
        const seen = await agent.commands.run([
          "sh",
          "-c",
          `ip -o -4 addr show | grep -c ' ${own.address} '; nc -w 5 ${outsideAddress} 8080 </dev/null`,
        ]);
        assert.equal(seen.stdout, "1\nfrom-outside 198.18.77.1\n", `sandbox ${id} has its address and reaches out`);
        if (id === fork.id) {
          // The source's server, next to it on the bridge: not reachable from the fork.
          const neighbour = await agent.commands
            .run(["sh", "-c", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${sourceIp} 9000`])
            .catch((err: { stdout?: string }) => err);
          assert.equal((neighbour as { stdout?: string }).stdout, "", "VMs on the bridge do not reach each other");
        } else {
          const itself = await agent.commands.run([
            "sh",
            "-c",
            `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${sourceIp} 9000`,
          ]);
          assert.match(itself.stdout, /from-the-source/, "the source's server answers at its address");
        }
      } finally {
        agent.close();
      }
    }
    await sandboxes.remove(fork.id);
    await assert.rejects(stat(`/sys/class/net/${tapName(fork.id)}`), { code: "ENOENT" });

    // A network-none fork of the same snapshot: its restored TAP NIC goes nowhere (its TAP
    // down, on no bridge; the guest's NIC unaddressed), and a cold boot of it configures the
    // user-mode NIC, not that one, so its agent answers.
    const offline = await sandboxes.create(tag, { backend: "vm", labels: { test: "vm-tap" } });
    assert.equal(offline.vmNetwork, undefined);
    const offlineTap = `/sys/class/net/${tapName(offline.id)}`;
    assert.equal((await readFile(`${offlineTap}/operstate`, "utf8")).trim(), "down");
    await assert.rejects(stat(`${offlineTap}/master`), { code: "ENOENT" });
    const onBridgeNet = `${forkTap.address.split(".").slice(0, 2).join(".")}.`;
    const probe = `ip -o -4 addr show | grep -cF ' ${onBridgeNet}'; nc -w 3 ${outsideAddress} 8080 </dev/null`;
    for (const boot of ["restored", "booted"]) {
      if (boot === "booted") {
        await sandboxes.stop(offline.id);
        await sandboxes.start(offline.id);
      }
      const agent = await sandboxes.connect(offline.id);
      try {
        const seen = await agent.commands.run(["sh", "-c", probe]).catch((err: { stdout?: string }) => err);
        assert.equal((seen as { stdout?: string }).stdout, "0\n", `${boot}: no bridge address, nothing reached`);
      } finally {
        agent.close();
      }
    }
    await sandboxes.remove(offline.id);

    // A QEMU killed behind our back: its TAP goes when the sandbox is next listed (reconcile lists).
    const dir = path.join(scratch.home, "sandboxes", info.id);
    const launch = JSON.parse(await readFile(path.join(dir, "supervisor.json"), "utf8")) as { agentPid: number };
    process.kill(launch.agentPid, "SIGKILL");
    for (let i = 0; i < 100 && (await backend.inspect(info.id)).state === "running"; i++)
      await new Promise((r) => setTimeout(r, 100));
    await sandboxes.reconcile();
    await assert.rejects(stat(`/sys/class/net/${tap}`), { code: "ENOENT" });
    await sandboxes.remove(info.id);
    assert.equal(await backend.removeSnapshot(tag), true);
  });
});

/** A TCP server on `host` that writes a line to whoever connects, counting them. */
async function listenOnce(host: string): Promise<{ port: number; accepted: number; close(): void }> {
  const state = { port: 0, accepted: 0, close: () => server.close() };
  const server = net.createServer((socket) => {
    state.accepted++;
    socket.end("reached\n");
  });
  server.listen(0, host);
  await once(server, "listening");
  state.port = (server.address() as AddressInfo).port;
  return state;
}

/** This machine's first non-loopback IPv4 address. */
function hostAddress(): string | undefined {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/** Images with no glibc, and with no shell or libc at all: what they run, and what it prints. */
const OTHER_IMAGES = [
  { image: "tether-test/musl", argv: ["/bin/hello-musl", "musl"], stdout: "hello musl\n" },
  { image: "tether-test/noshell", argv: ["/hello", "noshell"], stdout: "hello noshell\n" },
];
const othersSkip = toolsSkip ?? (await engineSkipReason(OTHER_IMAGES.map((i) => i.image)));

describe("vm sandboxes from the musl-only and shell-less images, booted in parallel", { skip: othersSkip }, () => {
  let scratch: { home: string; remove(): Promise<void> };
  let backend: VmBackend;
  before(async () => {
    if (othersSkip) return;
    scratch = await scratchHome("tether-vm-images-test-");
    backend = new VmBackend({ home: scratch.home, bundle: testBundle, cacheDir: CACHE_DIR });
  });
  after(async () => {
    if (othersSkip) return;
    for (const info of await backend.list()) await backend.remove(info.id).catch(() => {});
    await scratch.remove();
  });

  test("each boots its image with the agent from the bundle disk, runs the image's program, round-trips a file", async () => {
    const sandboxes = new Sandboxes({ home: scratch.home, backend, registry: false });
    await Promise.all(
      OTHER_IMAGES.map(async (spec) => {
        const info = await sandboxes.create(spec.image, { memory: "256m" });
        assert.equal(info.state, "running", spec.image);
        const agent = await sandboxes.connect(info.id);
        try {
          const result = await agent.commands.run(spec.argv);
          assert.deepEqual(
            { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode },
            { stdout: spec.stdout, stderr: "", exitCode: 0 },
          );
          // The agent's node is the bundle's (glibc-free images have none of their own).
          const bytes = Buffer.from(`${spec.image}\n`.repeat(10_000));
          await agent.files.write("/tmp/round-trip.bin", bytes);
          const back = await agent.files.read("/tmp/round-trip.bin", { format: "bytes" });
          assert.ok(Buffer.from(back).equals(bytes), `${spec.image}: the file read back differs`);
        } finally {
          agent.close();
        }
        await sandboxes.remove(info.id);
      }),
    );
  });
});

describe("addresses on Tether's bridge, claimed host-wide", { skip: tapSkip }, () => {
  let scratch: Awaited<ReturnType<typeof scratchHome>>;
  const claimed: { address: string; dir: string }[] = [];

  before(async () => {
    scratch = await scratchHome();
  });

  after(async () => {
    for (const { address, dir } of claimed) await releaseAddress(address, dir);
    await scratch.remove();
  });

  async function sandboxDir(name: string): Promise<string> {
    const dir = path.join(scratch.home, name, "sandboxes", "tapclaimtest");
    await mkdir(dir, { recursive: true });
    return dir;
  }

  async function allocate(id: string, dir: string): Promise<string> {
    const { address } = await allocateTap(id, dir, new Set());
    claimed.push({ address, dir });
    return address;
  }

  // The address comes from the id's hash: one id in two homes is the plainest collision, as
  // two ids whose hashes meet would be, with or without a registry between them.
  test("two sandboxes never get one address on the bridge, whatever home or process picks it", async () => {
    const id = "tapclaimtest";
    const first = await sandboxDir("home-a");
    const address = await allocate(id, first);
    assert.equal(await allocate(id, first), address, "its own claim is the sandbox's again");
    const second = await allocate(id, await sandboxDir("home-b"));
    assert.notEqual(second, address);
    // Eight creates at once, each in its own home: eight addresses.
    const dirs = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((n) => sandboxDir(`home-c${n}`)));
    const many = await Promise.all(dirs.map((dir) => allocate(id, dir)));
    assert.equal(new Set([address, second, ...many]).size, 10);
    // Released at its sandbox's removal, the address is free again.
    await releaseAddress(address, first);
    assert.equal(await allocate(id, await sandboxDir("home-d")), address);
  });
});
