/**
 * The real `tether` CLI on one vm sandbox (a QEMU microVM: seconds per boot under TCG, so
 * one VM goes through everything in sequence): doctor's vsock and TAP lines, create, ls,
 * exec and its exit code, cp in and out, shell on a PTY, ports, forward to a server in the
 * guest, --network bridge (a TAP where this host allows it: this machine unreachable from the
 * guest; else user-mode NAT: outbound, and the host loopback it reaches, as its warning says), the
 * guest's clock, the idle timeout stopping it, start, a killed supervisor noticed by
 * reconcile, rm.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { findVmTools, removeBridge, TAP_BRIDGE, tapName, tapSupport, VmToolsMissingError } from "@tether/host";
import * as pty from "node-pty";
import { CliHome, dockerSkipReason, TETHER } from "./support/cli.js";

const BUSYBOX = "tether-test/busybox";
/** Disks and the initramfs, shared with the host's vm tests (each is named by its content). */
const VM_CACHE = path.join(os.tmpdir(), "tether-test-vm-cache");
/** The idle timeout the sandbox gets: longer than any one step below takes, even on a loaded machine. */
const IDLE_S = 20;

/** Why VM tests cannot run here, or undefined; in CI the tools must be there. */
async function vmSkipReason(): Promise<string | undefined> {
  try {
    await findVmTools();
    return undefined;
  } catch (err) {
    if (!(err instanceof VmToolsMissingError)) throw err;
    if (process.env.CI === "true") throw new Error(`CI needs the vm backend's tools: ${err.message}`);
    console.log(`# skipping vm CLI tests: ${err.message}`);
    return err.message;
  }
}

const skip = (await vmSkipReason()) ?? (await dockerSkipReason([BUSYBOX]));

/** Whether this host gives a vm's --network bridge a TAP (as root here, and in CI, it does). */
const onTap = (await tapSupport()).ok;

const home = new CliHome();
mkdirSync(VM_CACHE, { recursive: true });
symlinkSync(VM_CACHE, path.join(home.home, "vm"));
const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-cli-vm-"));
after(async () => {
  const listed = await home.tether(["ls", "--json", "--label", home.label]);
  const ids = listed.code === 0 ? (JSON.parse(listed.stdout) as { id: string }[]).map((s) => s.id) : [];
  if (ids.length > 0) await home.tether(["rm", "-f", ...ids]);
  await home.cleanup();
  rmSync(scratch, { recursive: true, force: true });
  // Tether's bridge and chains: gone unless a VM is on them (another test's; the last cleans
  // up). Made again at the next TAP VM's start.
  if (onTap) await removeBridge();
});
const tether = home.tether.bind(home);

/** `tether ARGS` that must succeed: its stdout. */
async function ok(args: string[]): Promise<string> {
  const r = await tether(args);
  assert.equal(r.code, 0, `tether ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** The sandbox as `ls --json` shows it. */
async function listed(
  id: string,
): Promise<{ id: string; backend: string; state: string; expiresAt?: string } | undefined> {
  const all = JSON.parse(await ok(["ls", "--json"])) as {
    id: string;
    backend: string;
    state: string;
    expiresAt?: string;
  }[];
  return all.find((s) => s.id === id);
}

/** The address of Tether's VM bridge here, if it has one. */
function bridgeAddress(): string | undefined {
  return os.networkInterfaces()[TAP_BRIDGE]?.find((a) => a.family === "IPv4")?.address;
}

/** This machine's first non-loopback IPv4 address: what a guest with outbound network can reach the host by. */
function hostAddress(): string | undefined {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/** Whether `pid` is a live process (a zombie, dead but not yet reaped, is not). */
function running(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** A TCP server on `host` that writes `line` to whoever connects and closes. */
async function lineServer(host: string, line: string): Promise<net.Server> {
  const server = net.createServer((socket) => socket.end(line));
  server.listen(0, host);
  await once(server, "listening");
  return server;
}

/** `tether shell ID` on a pseudo-terminal of 100x30: what it printed, and its exit code. */
async function shellOnPty(id: string, input: string, until: RegExp): Promise<{ output: string; code: number }> {
  const term = pty.spawn(process.execPath, [TETHER, "shell", id], {
    cols: 100,
    rows: 30,
    env: { ...process.env, TETHER_HOME: home.home } as Record<string, string>,
  });
  let output = "";
  let sent = false;
  const exit = new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)));
  term.onData((d) => {
    output += d;
    // Type only once the shell's prompt is there (busybox's ash asks for the cursor position after it).
    if (!sent && /[#$] /.test(output)) {
      sent = true;
      term.write(input);
    }
  });
  const timer = setTimeout(() => term.kill("SIGKILL"), 60_000);
  const code = await exit;
  clearTimeout(timer);
  assert.match(output, until, `tether shell printed: ${JSON.stringify(output)}`);
  return { output, code };
}

test("a vm sandbox through the CLI: create, ls, exec, cp, shell, ports, forward, outbound network, idle timeout, start, a killed supervisor, rm", {
  skip,
}, async () => {
  // Outbound network: a server on this machine's own address, which the guest reaches through QEMU's NAT.
  const outside = await lineServer("0.0.0.0", "from-the-host\n");
  const outsidePort = (outside.address() as AddressInfo).port;
  const loopback = await lineServer("127.0.0.1", "from-the-host-loopback\n");
  try {
    // doctor says, point by point, what the host offers a VM and what the backend uses instead.
    const doctor = JSON.parse(await ok(["doctor", "--json"])) as {
      backends: { kind: string; available: boolean; details?: { vsock?: string; tap?: string } }[];
    };
    const vm = doctor.backends.find((b) => b.kind === "vm");
    assert.equal(vm?.available, true);
    assert.match(
      vm?.details?.vsock ?? "",
      /vhost-vsock.*: its agent is reached over TCP that QEMU forwards from 127\.0\.0\.1/,
    );
    assert.match(
      vm?.details?.tap ?? "",
      onTap
        ? /TAP\/bridge networking is available here: --network bridge is a TAP on Tether's bridge tether0/
        : /no TAP\/bridge networking here \(.*\): --network bridge is QEMU's user-mode NAT/,
    );

    const started = Date.now();
    const created = await tether([
      "create",
      "--backend",
      "vm",
      "--network",
      "bridge",
      "--idle-timeout",
      `${IDLE_S}s`,
      "--timeout",
      "10m",
      "--label",
      home.label,
      BUSYBOX,
    ]);
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    // What user-mode NAT lets the guest reach is said, every time (checked below); a TAP
    // reaches nothing of this machine, and nothing is said.
    const warning = /warning: sandbox \S+ \(vm, network bridge\) .* this machine's loopback \(at 10\.0\.2\.2\)/;
    if (onTap) assert.doesNotMatch(created.stderr, warning);
    else assert.match(created.stderr, warning);
    console.log(`# tether create --backend vm: ${Date.now() - started} ms to the agent answering`);
    assert.match(id, /^[0-9a-f]{12}$/);

    const answered = Date.now();
    const shown = await listed(id);
    assert.equal(shown?.backend, "vm");
    assert.equal(shown?.state, "running");
    // The timeout counts from when it answered, not from the create request before its boot.
    const expiresAt = new Date(shown?.expiresAt ?? 0).getTime();
    assert.ok(expiresAt >= answered + 600_000 - 5000, `expires ${expiresAt - answered} ms after it answered`);
    assert.match(await ok(["ls"]), new RegExp(`^${id} .* vm +running `, "m"));

    // exec: output and exit codes pass through.
    const exec = await tether(["exec", id, "--", "sh", "-c", "uname -s; echo err >&2; exit 3"]);
    assert.equal(exec.code, 3);
    assert.equal(exec.stdout, "Linux\n");
    assert.equal(exec.stderr, "err\n");
    assert.equal((await tether(["exec", id, "--", "true"])).code, 0);

    // cp: a file in, then back out under another name.
    writeFileSync(path.join(scratch, "in.txt"), "copied into a vm\n");
    await ok(["cp", path.join(scratch, "in.txt"), `${id}:/root/in.txt`]);
    assert.equal(await ok(["exec", id, "--", "cat", "/root/in.txt"]), "copied into a vm\n");
    await ok(["cp", `${id}:/root/in.txt`, path.join(scratch, "out.txt")]);
    assert.equal(readFileSync(path.join(scratch, "out.txt"), "utf8"), "copied into a vm\n");

    // shell: a login shell on a PTY of the terminal's size, exiting with its code.
    const shell = await shellOnPty(id, "stty size; echo shell-$((40+2)); exit 5\r", /shell-42/);
    assert.equal(shell.code, 5);
    assert.match(shell.output, /30 100/);

    // ports and forward: a server inside the guest, fetched from this machine's loopback.
    await ok([
      "exec",
      id,
      "--",
      "sh",
      "-c",
      "mkdir -p /www && echo served-from-the-vm > /www/index.html && httpd -p 8080 -h /www",
    ]);
    assert.match(await ok(["ports", id]), /^tcp6? +\S+ +8080 +\d+ +httpd -p 8080/m);
    const forward = new Forward(id, "8080");
    try {
      const local = await forward.address();
      const body = await (await fetch(`http://${local}/`)).text();
      assert.equal(body, "served-from-the-vm\n");
    } finally {
      forward.stop();
    }

    const host = hostAddress();
    const port = (loopback.address() as AddressInfo).port;
    if (onTap) {
      // --network bridge on a TAP: nothing of this machine answers the guest, neither its
      // loopback (10.0.2.2 on the agent's user-mode NIC, restricted) nor its own addresses
      // (the bridge's among them). Outbound through NAT is checked in the host's vm tests,
      // against a network namespace of their own.
      const gateway = bridgeAddress();
      const targets = [`10.0.2.2 ${port}`, `10.0.2.2 ${outsidePort}`];
      if (host) targets.push(`${host} ${outsidePort}`);
      assert.ok(gateway, `${TAP_BRIDGE} has an address`);
      targets.push(`${gateway} ${outsidePort}`);
      for (const target of targets) {
        const reached = await tether(["exec", id, "--", "sh", "-c", `nc -w 3 ${target} </dev/null`]);
        assert.equal(reached.stdout, "", `nothing answers the guest at ${target}`);
      }
    } else {
      // --network bridge: the guest reaches a server outside it (QEMU's user-mode NAT).
      if (host) {
        // nc, not wget: Debian's static busybox wget dies of SIGSEGV on some answers (node's among them).
        const fetched = await tether(["exec", id, "--", "nc", "-w", "10", host, String(outsidePort)]);
        assert.equal(fetched.stdout, "from-the-host\n", `nc: ${fetched.code} ${fetched.stderr}`);
      } else console.log("# no non-loopback IPv4 address here: the outbound check is left out");
      // As the create's warning says: the NAT also takes it to this machine's loopback.
      const leaked = await tether(["exec", id, "--", "nc", "-w", "10", "10.0.2.2", String(port)]);
      assert.equal(leaked.stdout, "from-the-host-loopback\n", `nc: ${leaked.code} ${leaked.stderr}`);
    }

    // The guest's clock keeps the host's time (under TCG it drifted on jiffies).
    const before = Math.floor(Date.now() / 1000);
    const guestNow = Number(await ok(["exec", id, "--", "date", "+%s"]));
    const after = Math.ceil(Date.now() / 1000);
    assert.ok(guestNow >= before - 2 && guestNow <= after + 1, `guest ${guestNow}, host ${before}..${after}`);

    // The idle timeout: left alone, the sandbox is stopped by the next tether command (here `ls`) once it is due.
    const idleFrom = Date.now();
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    let state = (await listed(id))?.state;
    for (let i = 0; state === "running" && i < 30; i++) {
      await new Promise((r) => setTimeout(r, 2000));
      state = (await listed(id))?.state;
    }
    assert.equal(state, "stopped", `still ${state} ${Date.now() - idleFrom} ms after the last use`);
    const stopped = await tether(["exec", id, "--", "true"]);
    assert.notEqual(stopped.code, 0);
    assert.match(stopped.stderr, /not running|stopped/);

    // start: a cold boot from its own disk, which kept what was copied in.
    const restarted = Date.now();
    await ok(["start", id]);
    console.log(`# tether start (a cold boot of a stopped vm): ${Date.now() - restarted} ms`);
    assert.equal(await ok(["exec", id, "--", "cat", "/root/in.txt"]), "copied into a vm\n");

    // Its supervisor killed (it relays the agent's socket): QEMU goes with it rather than run on
    // unreachable, and reconcile records the sandbox stopped.
    const dir = path.join(home.home, "sandboxes", id);
    const supervisor = JSON.parse(readFileSync(path.join(dir, "supervisor.json"), "utf8")) as {
      pid: number;
      agentPid: number;
    };
    process.kill(supervisor.pid, "SIGKILL");
    for (let i = 0; i < 100 && running(supervisor.agentPid); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(running(supervisor.agentPid), false, "QEMU died with its supervisor");
    assert.match(await ok(["reconcile"]), new RegExp(`^fixed ${id}: running -> stopped$`, "m"));
    // QEMU's TAP, left by its death, went when reconcile saw the sandbox stopped.
    if (onTap) assert.equal(existsSync(`/sys/class/net/${tapName(id)}`), false, "the dead VM's TAP is gone");

    // rm: the stopped VM goes, with its directory.
    await ok(["rm", id]);
    assert.equal(await listed(id), undefined);
    assert.deepEqual(home.sandboxDirs(), []);
  } finally {
    outside.close();
    loopback.close();
  }
});

/** A `tether forward ID PORTS` kept running until stopped. */
class Forward {
  private readonly child: ChildProcess;
  private stdout = "";
  private stderr = "";
  constructor(id: string, ports: string) {
    this.child = spawn(process.execPath, [TETHER, "forward", id, ports], {
      env: { ...process.env, TETHER_HOME: home.home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout?.setEncoding("utf8").on("data", (t: string) => {
      this.stdout += t;
    });
    this.child.stderr?.setEncoding("utf8").on("data", (t: string) => {
      this.stderr += t;
    });
  }

  /** The 127.0.0.1:PORT it listens on, once it says so. */
  async address(): Promise<string> {
    for (let i = 0; i < 200; i++) {
      const match = /Forwarding (127\.0\.0\.1:\d+)/.exec(this.stdout);
      if (match) return match[1];
      if (this.child.exitCode !== null) assert.fail(`tether forward exited (${this.child.exitCode}): ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`tether forward said nothing in 20 s: ${this.stdout}${this.stderr}`);
  }

  stop(): void {
    this.child.kill("SIGINT");
  }
}
