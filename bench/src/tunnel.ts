import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Duplex } from "node:stream";
import type { AgentProcess } from "@tether/agent";
import type { Agent } from "@tether/sdk";
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
  tether: TunnelRun & { agentCpuSecondsPerGiB: number };
  loopback: TunnelRun;
  ssh: TunnelRun | null;
  sshSkipped: string | null;
  rows: Row[];
}

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
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
  return { port: Number(line.toString().trim()), stop: () => child.kill("SIGKILL") };
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
 * Tunnel throughput: `TUNNEL_BYTES` to a sink through `agent.tunnel` (over the agent's
 * unix socket), beside a direct loopback connection and `ssh -L` to the same sink.
 */
export async function measureTunnels(
  client: Agent,
  agent: AgentProcess,
  log: (text: string) => void,
): Promise<TunnelResults> {
  const sink = await startSink();
  const ssh = await startSshForward(sink.port);
  const sshSkipped = "skipped" in ssh ? ssh.skipped : null;
  if (sshSkipped) log(`ssh -L row skipped: ${sshSkipped}`);
  try {
    log(`tunnel throughput: ${TUNNEL_BYTES} bytes to a sink, best of ${TUNNEL_RUNS}`);
    const tetherRuns: (TunnelRun & { agentCpuSecondsPerGiB: number })[] = [];
    const loopbackRuns: TunnelRun[] = [];
    const sshRuns: TunnelRun[] = [];
    for (let i = 0; i < TUNNEL_RUNS; i++) {
      const cpu = agent.cpuSeconds();
      const run = await send(await client.tunnel(sink.port));
      tetherRuns.push({ ...run, agentCpuSecondsPerGiB: (agent.cpuSeconds() - cpu) / (run.bytes / (1 << 30)) });
      loopbackRuns.push(await send(await connectTcp(sink.port)));
      if (!("skipped" in ssh)) sshRuns.push(await send(await connectTcp(ssh.port)));
    }
    const tether = best(tetherRuns) as TunnelResults["tether"];
    const loopback = best(loopbackRuns);
    const sshBest = sshRuns.length > 0 ? best(sshRuns) : null;
    const rows: Row[] = [
      {
        metric: "tunnel throughput (unix) vs loopback",
        unit: "MB/s",
        tether: tether.mbPerSecond,
        baseline: loopback.mbPerSecond,
        baselineName: "loopback",
        ratio: tether.mbPerSecond / loopback.mbPerSecond,
        target: "",
        met: null,
      },
      {
        metric: "tunnel throughput vs ssh -L",
        unit: "MB/s",
        tether: tether.mbPerSecond,
        baseline: sshBest?.mbPerSecond ?? null,
        baselineName: "ssh -L",
        ratio: sshBest ? tether.mbPerSecond / sshBest.mbPerSecond : null,
        target: ">= ssh -L",
        met: sshBest ? tether.mbPerSecond >= sshBest.mbPerSecond : null,
        ...(sshSkipped ? { note: sshSkipped } : {}),
      },
      {
        metric: "agent CPU per GiB through a tunnel",
        unit: "s",
        tether: tether.agentCpuSecondsPerGiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "",
        met: null,
      },
    ];
    return { tether, loopback, ssh: sshBest, sshSkipped, rows };
  } finally {
    if (!("skipped" in ssh)) ssh.stop();
    sink.stop();
  }
}
