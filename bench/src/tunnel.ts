import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Duplex } from "node:stream";
import type { AgentProcess } from "@tether/agent";
import type { Agent } from "@tether/sdk";
import { readyLine } from "./child-output.js";
import type { Row } from "./report.js";

const TUNNEL_BYTES = Number(process.env.BENCH_TUNNEL_BYTES ?? 1 << 30);
const TUNNEL_RUNS = Number(process.env.BENCH_TUNNEL_RUNS ?? 2);
const SSHD = "/usr/sbin/sshd";
const MB = 1e6;

export interface TunnelRun {
  bytes: number;
  seconds: number;
  mbPerSecond: number;
}

export interface TunnelResults {
  /** One per agent measured, by its label. */
  tether: (TunnelRun & { label: string; agentCpuSecondsPerGiB: number })[];
  loopback: TunnelRun;
  /** Through a bare Node relay process (see startRelay). */
  relay: TunnelRun;
  ssh: TunnelRun | null;
  sshSkipped: string | null;
  rows: Row[];
}

/** An agent to send through, and what to call it in the rows. */
export interface TunnelAgent {
  label: string;
  client: Agent;
  agent: AgentProcess;
}

/** The agent as a test or the local backend runs it: tetherd on the Node running this. */
export const HOST_AGENT_LABEL = `tetherd on this host's Node ${process.versions.node}`;
/** The agent as sandboxes run it (see spawnBundledAgent). */
export const BUNDLED_AGENT_LABEL = "the bundle's tetherd, as in sandboxes";

/** The goal for a tunnel against a plain loopback connection to the same sink (issue #13). */
const LOOPBACK_GOAL = 0.5;

/**
 * A sink in its own process (so the sender's CPU is not shared with it): counts what each
 * connection sends and answers the count when the sender half-closes.
 */
async function startSink(): Promise<{ port: number; stop(): void }> {
  const script = `
const server = require("node:net").createServer({ allowHalfOpen: true }, (s) => {
  let n = 0;
  s.on("data", (d) => (n += d.length)).on("end", () => s.end(String(n)));
});
server.listen(0, "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"));`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await readyLine(child, "the sink");
  return { port: Number(line.trim()), stop: () => child.kill("SIGKILL") };
}

/**
 * The floor for any relay written in Node: a process of its own that accepts on a unix
 * socket and pipes each connection to the sink over TCP and back, nothing else (no HTTP,
 * no token), on the Node running this with its default flags. A tunnel does the same
 * hops (client to agent over its unix socket, agent to the port over TCP) plus HTTP/2.
 */
async function startRelay(sinkPort: number): Promise<{ socket: string; stop(): void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-bench-relay-"));
  const socket = path.join(dir, "relay.sock");
  const script = `
const net = require("node:net");
net.createServer({ allowHalfOpen: true }, (client) => {
  const target = net.connect({ port: ${sinkPort}, host: "127.0.0.1", allowHalfOpen: true });
  client.pipe(target).on("error", () => client.destroy());
  target.pipe(client).on("error", () => target.destroy());
}).listen(${JSON.stringify(socket)}, () => process.stdout.write("listening\\n"));`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await readyLine(child, "the relay").catch((err) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    socket,
    stop: () => {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sends `TUNNEL_BYTES` zero bytes through `stream` (honouring backpressure), half-closes, waits for the sink's count. */
async function send(stream: Duplex): Promise<TunnelRun> {
  const block = Buffer.alloc(1 << 20);
  const start = process.hrtime.bigint();
  const answer = new Promise<string>((resolve, reject) => {
    let text = "";
    stream.on("data", (d: Buffer) => {
      text += d.toString();
    });
    stream.once("end", () => resolve(text));
    stream.once("error", reject);
  });
  for (let sent = 0; sent < TUNNEL_BYTES; sent += block.length) {
    if (!stream.write(block)) await once(stream, "drain");
  }
  stream.end();
  const counted = Number(await answer);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (counted !== TUNNEL_BYTES) throw new Error(`the sink got ${counted} of ${TUNNEL_BYTES} bytes`);
  stream.destroy();
  return { bytes: TUNNEL_BYTES, seconds, mbPerSecond: TUNNEL_BYTES / MB / seconds };
}

async function connectTcp(port: number): Promise<net.Socket> {
  const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  await once(socket, "connect");
  return socket;
}

async function connectUnix(socketPath: string): Promise<net.Socket> {
  const socket = net.connect({ path: socketPath, allowHalfOpen: true });
  await once(socket, "connect");
  return socket;
}

function best(runs: TunnelRun[]): TunnelRun {
  return runs.reduce((a, b) => (b.mbPerSecond > a.mbPerSecond ? b : a));
}

/** A private sshd on a loopback port, with a throw-away host key and client key, and `ssh -N -L` through it. */
async function startSshForward(sinkPort: number): Promise<{ port: number; stop(): void } | { skipped: string }> {
  if (!existsSync(SSHD)) return { skipped: `${SSHD} is missing (bench/setup.sh installs it)` };
  if (process.getuid?.() !== 0) return { skipped: "a private sshd needs root here" };
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-bench-ssh-"));
  const children: ChildProcess[] = [];
  const stop = () => {
    for (const child of children) child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const keygen = (file: string) =>
      new Promise<void>((resolve, reject) => {
        const child = spawn("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file], { stdio: "ignore" });
        child
          .once("error", reject)
          .once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`ssh-keygen ${code}`))));
      });
    await keygen(path.join(dir, "host_key"));
    await keygen(path.join(dir, "client_key"));
    writeFileSync(path.join(dir, "authorized_keys"), readFileSync(path.join(dir, "client_key.pub")));
    chmodSync(path.join(dir, "authorized_keys"), 0o600);
    const sshPort = await freePort();
    writeFileSync(
      path.join(dir, "sshd_config"),
      [
        `ListenAddress 127.0.0.1:${sshPort}`,
        `HostKey ${path.join(dir, "host_key")}`,
        `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
        `PidFile ${path.join(dir, "sshd.pid")}`,
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding yes",
      ].join("\n"),
    );
    // sshd insists on its privilege separation directory even for a private instance.
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    const sshd = spawn(SSHD, ["-f", path.join(dir, "sshd_config"), "-D", "-e"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(sshd);
    await waitForPort(sshPort);
    const localPort = await freePort();
    const ssh = spawn(
      "ssh",
      [
        "-N",
        "-L",
        `127.0.0.1:${localPort}:127.0.0.1:${sinkPort}`,
        "-p",
        String(sshPort),
        "-i",
        path.join(dir, "client_key"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        `${os.userInfo().username}@127.0.0.1`,
      ],
      { stdio: "ignore" },
    );
    children.push(ssh);
    await waitForPort(localPort);
    return { port: localPort, stop };
  } catch (err) {
    stop();
    return { skipped: `ssh -L could not be set up: ${(err as Error).message}` };
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const socket = await connectTcp(port);
      socket.destroy();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * Tunnel throughput: `TUNNEL_BYTES` to a sink through `agent.tunnel` (over each agent's
 * unix socket), beside a direct loopback connection and `ssh -L` to the same sink, taken
 * in turn so that the machine's load of the moment falls on all of them alike.
 */
export async function measureTunnels(agents: TunnelAgent[], log: (text: string) => void): Promise<TunnelResults> {
  const sink = await startSink();
  const relay = await startRelay(sink.port).catch((err) => {
    sink.stop();
    throw err;
  });
  const ssh = await startSshForward(sink.port);
  const sshSkipped = "skipped" in ssh ? ssh.skipped : null;
  if (sshSkipped) log(`ssh -L row skipped: ${sshSkipped}`);
  try {
    log(`tunnel throughput: ${TUNNEL_BYTES} bytes to a sink, best of ${TUNNEL_RUNS}`);
    const tetherRuns = agents.map(() => [] as (TunnelRun & { agentCpuSecondsPerGiB: number })[]);
    const loopbackRuns: TunnelRun[] = [];
    const relayRuns: TunnelRun[] = [];
    const sshRuns: TunnelRun[] = [];
    for (let i = 0; i < TUNNEL_RUNS; i++) {
      for (const [n, { client, agent }] of agents.entries()) {
        const cpu = agent.cpuSeconds();
        const run = await send(await client.tunnel(sink.port));
        tetherRuns[n].push({ ...run, agentCpuSecondsPerGiB: (agent.cpuSeconds() - cpu) / (run.bytes / (1 << 30)) });
      }
      loopbackRuns.push(await send(await connectTcp(sink.port)));
      relayRuns.push(await send(await connectUnix(relay.socket)));
      if (!("skipped" in ssh)) sshRuns.push(await send(await connectTcp(ssh.port)));
    }
    const tether = agents.map(({ label }, n) => ({
      label,
      ...(best(tetherRuns[n]) as TunnelRun & { agentCpuSecondsPerGiB: number }),
    }));
    const loopback = best(loopbackRuns);
    const relayBest = best(relayRuns);
    const sshBest = sshRuns.length > 0 ? best(sshRuns) : null;
    const rows: Row[] = tether.flatMap((run): Row[] => [
      {
        metric: `tunnel throughput (unix), ${run.label}, vs loopback`,
        unit: "MB/s",
        tether: run.mbPerSecond,
        baseline: loopback.mbPerSecond,
        baselineName: "loopback",
        ratio: run.mbPerSecond / loopback.mbPerSecond,
        target: `>= ${LOOPBACK_GOAL}x loopback`,
        met: run.mbPerSecond >= LOOPBACK_GOAL * loopback.mbPerSecond,
      },
      {
        metric: `tunnel throughput, ${run.label}, vs a bare Node relay`,
        unit: "MB/s",
        tether: run.mbPerSecond,
        baseline: relayBest.mbPerSecond,
        baselineName: "node relay",
        ratio: run.mbPerSecond / relayBest.mbPerSecond,
        target: "",
        met: null,
      },
      {
        metric: `tunnel throughput, ${run.label}, vs ssh -L`,
        unit: "MB/s",
        tether: run.mbPerSecond,
        baseline: sshBest?.mbPerSecond ?? null,
        baselineName: "ssh -L",
        ratio: sshBest ? run.mbPerSecond / sshBest.mbPerSecond : null,
        target: ">= ssh -L",
        met: sshBest ? run.mbPerSecond >= sshBest.mbPerSecond : null,
        ...(sshSkipped ? { note: sshSkipped } : {}),
      },
      {
        metric: `agent CPU per GiB through a tunnel, ${run.label}`,
        unit: "s",
        tether: run.agentCpuSecondsPerGiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "",
        met: null,
      },
    ]);
    return { tether, loopback, relay: relayBest, ssh: sshBest, sshSkipped, rows };
  } finally {
    if (!("skipped" in ssh)) ssh.stop();
    relay.stop();
    sink.stop();
  }
}
