/**
 * `npm run stress`: a mixed load for a fixed time against one tetherd child process and
 * against a Docker sandbox (through @tether/host's Sandboxes): execs, PTYs, uploads,
 * downloads, tunnels, directory watchers, file creates and removes, sandbox creates and
 * removes (Docker), and clients SIGKILLed mid-call. Loopback only; every loop is bounded
 * by the deadline. Prints per-kind counts, errors and p50/p99 latencies, the agent's RSS
 * and open fds at the start and the end (sampled meanwhile, to see a trend), zombies under
 * it and commands it still runs at the end; writes the whole of it to bench/results/.
 *
 *   npm run stress -- [--duration 10m|60s] [--target agent|docker|both]
 *   (or STRESS_DURATION / STRESS_TARGET)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { type AgentProcess, spawnAgentProcess } from "@tether/agent";
import { Sandboxes } from "@tether/host";
import { Filesystem } from "@tether/protocol/filesystem";
import { Agent, type ConnectionOptions } from "@tether/sdk";
import { readyLine } from "./child-output.js";
import { BUSYBOX_IMAGE } from "./docker.js";
import { writeResults } from "./report.js";
import { summarize, type Timing } from "./stats.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const log = (text: string) => process.stderr.write(`stress: ${text}\n`);
const MiB = 1 << 20;
/** The agent's TCP port inside a Docker sandbox (the tunnels go there: an HTTP server every sandbox has). */
const CONTAINER_AGENT_PORT = 49983;
const UPLOAD_BYTES = 256 << 10;
/** How often memory and fds are sampled, for the trend. */
const SAMPLE_MS = 10_000;
/** A request that takes longer counts as failed: the run stays bounded in time whatever hangs. */
const REQUEST_TIMEOUT_MS = 60_000;
/** Sandboxes created and removed concurrently with the rest (Docker only). */
const CREATE_WORKERS = 1;

function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new Error(`--duration ${text}: expected e.g. 600s, 10m or 60000ms`);
  const n = Number(match[1]);
  return match[2] === "ms" ? n : match[2] === "m" ? n * 60_000 : n * 1000;
}

/** One kind of request: latencies of those that succeeded, and the errors (first few kept). */
class Kind {
  readonly samples: number[] = [];
  errors = 0;
  readonly firstErrors: string[] = [];
  constructor(readonly name: string) {}

  /** Times one request; one that takes over REQUEST_TIMEOUT_MS counts as an error (and is left behind). */
  async time(fn: () => Promise<unknown>): Promise<void> {
    const start = process.hrtime.bigint();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)),
            REQUEST_TIMEOUT_MS,
          );
        }),
      ]);
      this.samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    } catch (err) {
      this.errors++;
      if (this.firstErrors.length < 3) this.firstErrors.push((err as Error).message.split("\n")[0]);
    } finally {
      clearTimeout(timer);
    }
  }

  summary(): { kind: string; done: number; errors: number; firstErrors: string[]; timing: Timing | null } {
    return {
      kind: this.name,
      done: this.samples.length,
      errors: this.errors,
      firstErrors: this.firstErrors,
      timing: this.samples.length > 0 ? summarize(this.samples) : null,
    };
  }
}

/** What the load runs against. */
interface Target {
  name: string;
  agent: Agent;
  /** For clients in other processes. */
  connection: ConnectionOptions;
  /** The agent's pid on this host. */
  pid: number;
  /** A port inside the sandbox with an HTTP server on it (the agent's own). */
  httpPort: number;
  /** A scratch directory inside the sandbox. */
  dir: string;
  /** Sandbox creates and removes, where there is a host to make them. */
  createRemove?: () => Promise<void>;
  close(): Promise<void>;
}

interface ProcSample {
  atMs: number;
  rssMiB: number;
  fds: number;
}

function procSample(pid: number, startedAt: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
  return { atMs: Date.now() - startedAt, rssMiB: rss / MiB, fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** Every process on the host with its parent and state, from /proc. */
function processTable(): Map<number, { ppid: number; state: string }> {
  const table = new Map<number, { ppid: number; state: string }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      table.set(Number(entry), { state: fields[0], ppid: Number(fields[1]) });
    } catch {
      // Gone meanwhile.
    }
  }
  return table;
}

/** The agent's descendants that are zombies (dead and not reaped). */
function zombiesUnder(pid: number): number[] {
  const table = processTable();
  const under = (p: number): boolean => {
    for (let q = table.get(p)?.ppid; q !== undefined && q > 1; q = table.get(q)?.ppid) if (q === pid) return true;
    return false;
  };
  return [...table].filter(([p, info]) => info.state === "Z" && under(p)).map(([p]) => p);
}

/** Runs `body` again and again until the deadline, in `workers` parallel loops. */
async function loop(workers: number, deadline: number, body: () => Promise<void>): Promise<void> {
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < deadline) await body();
    }),
  );
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** GET /health over a tunnel to the sandbox's agent port; the answer must be a 2xx. */
async function tunnelHealth(agent: Agent, port: number): Promise<void> {
  const tunnel = await agent.tunnel(port);
  const chunks: Buffer[] = [];
  tunnel.on("data", (d: Buffer) => chunks.push(d));
  const ended = once(tunnel, "end");
  tunnel.end("GET /health HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n");
  await ended;
  tunnel.destroy();
  const status = Buffer.concat(chunks).toString("latin1").split("\r\n")[0];
  if (!/^HTTP\/1\.1 2\d\d/.test(status)) throw new Error(`tunnelled GET /health answered ${JSON.stringify(status)}`);
}

/** A client process that connects, starts a long command and an upload, and is SIGKILLed after `afterMs`. */
async function killedClient(target: Target, afterMs: number): Promise<void> {
  const child: ChildProcess = spawn(
    process.execPath,
    [path.join(here, "stress-client.js"), JSON.stringify(target.connection), target.dir],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    const line = await readyLine(child, "the client");
    if (!line.startsWith("busy")) throw new Error(`the client said ${line}`);
    await sleep(afterMs);
  } finally {
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }
}

/** The mixed load against one target until the deadline. */
async function runLoad(target: Target, durationMs: number) {
  const { agent, dir } = target;
  const kinds = new Map<string, Kind>();
  const kind = (name: string) => {
    let k = kinds.get(name);
    if (!k) {
      k = new Kind(name);
      kinds.set(name, k);
    }
    return k;
  };
  const fs = createClient(Filesystem, agent.connection.transport);
  const headers = agent.connection.headers();
  const payload = Buffer.alloc(UPLOAD_BYTES, 7);
  await agent.files.makeDir(dir);
  await agent.files.write(`${dir}/download`, payload);
  const startedAt = Date.now();
  const deadline = startedAt + durationMs;
  const samples: ProcSample[] = [procSample(target.pid, startedAt)];
  const sampler = setInterval(() => samples.push(procSample(target.pid, startedAt)), SAMPLE_MS);
  let n = 0;
  try {
    await Promise.all([
      loop(3, deadline, () =>
        kind("exec").time(async () => {
          const result = await agent.commands.run(["sh", "-c", "echo out; echo err >&2"]);
          if (result.stdout !== "out\n") throw new Error(`exec printed ${JSON.stringify(result.stdout)}`);
        }),
      ),
      loop(1, deadline, () =>
        kind("pty").time(async () => {
          let seen = "";
          const pty = await agent.pty.create({
            argv: ["/bin/sh", "-c", "echo pty-ok"],
            cols: 80,
            rows: 24,
            onData: (data) => {
              seen += Buffer.from(data).toString();
            },
          });
          await pty.wait();
          if (!seen.includes("pty-ok")) throw new Error(`pty printed ${JSON.stringify(seen)}`);
        }),
      ),
      loop(1, deadline, () =>
        kind("upload").time(async () => {
          const file = `${dir}/upload-${n++ % 4}`;
          await agent.files.write(file, payload);
          const size = (await agent.files.stat(file)).size;
          if (Number(size) !== UPLOAD_BYTES) throw new Error(`uploaded ${size} of ${UPLOAD_BYTES} bytes`);
        }),
      ),
      loop(1, deadline, () =>
        kind("download").time(async () => {
          const bytes = await agent.files.read(`${dir}/download`, { format: "bytes" });
          if (bytes.length !== UPLOAD_BYTES) throw new Error(`downloaded ${bytes.length} bytes`);
        }),
      ),
      loop(1, deadline, () => kind("tunnel").time(() => tunnelHealth(agent, target.httpPort))),
      loop(1, deadline, () =>
        kind("watcher").time(async () => {
          const sub = `${dir}/watched-${n++}`;
          await agent.files.makeDir(sub);
          const { watcherId } = await fs.createWatcher({ path: sub, recursive: false }, { headers });
          await agent.files.write(`${sub}/a`, "x");
          let events = 0;
          for (let i = 0; i < 50 && events === 0; i++) {
            events += (await fs.getWatcherEvents({ watcherId }, { headers })).events.length;
            if (events === 0) await sleep(20);
          }
          await fs.removeWatcher({ watcherId }, { headers });
          await agent.files.remove(sub);
          if (events === 0) throw new Error("the watcher saw no event within a second");
        }),
      ),
      loop(1, deadline, () =>
        kind("create-remove file").time(async () => {
          const file = `${dir}/churn-${n++}`;
          await agent.files.write(file, "x");
          await agent.files.remove(file);
        }),
      ),
      loop(1, deadline, async () => {
        await kind("client killed mid-call").time(() => killedClient(target, 100 + Math.floor(Math.random() * 400)));
        await sleep(500);
      }),
      ...(target.createRemove
        ? [
            loop(CREATE_WORKERS, deadline, () =>
              kind("sandbox create+remove").time(target.createRemove as () => Promise<void>),
            ),
          ]
        : []),
    ]);
  } finally {
    clearInterval(sampler);
  }
  // What the killed clients started ends by itself (sleep 30) or is killed here; then the
  // agent should be back where it was: no zombies, nothing of ours still running.
  await sleep(2000);
  for (const proc of await agent.commands.list()) {
    if (proc.cmd === "sleep") await agent.commands.kill(proc.pid).catch(() => {});
  }
  await sleep(3000);
  const end = procSample(target.pid, startedAt);
  samples.push(end);
  const zombies = zombiesUnder(target.pid);
  const stillRunning = (await agent.commands.list()).length;
  return {
    target: target.name,
    durationMs,
    requests: [...kinds.values()].map((k) => k.summary()),
    start: samples[0],
    end,
    samples,
    zombies,
    stillRunning,
  };
}

async function agentTarget(dir: string): Promise<Target> {
  const socket = path.join(dir, "agent.sock");
  const proc: AgentProcess = await spawnAgentProcess(["--port", "0", "--socket", socket, "--log-level", "info"]);
  const agent = new Agent({ socket });
  await agent.health();
  return {
    name: "tetherd (child process)",
    agent,
    connection: { socket },
    pid: proc.pid,
    httpPort: Number(new URL(proc.url as string).port),
    dir: path.join(dir, "scratch"),
    async close() {
      agent.close();
      await proc.stop();
    },
  };
}

/**
 * The agent's host pid in a container: the tetherd among the container's init and its
 * children (docker's init, tini, has tetherd's command line in its own arguments).
 */
function containerAgentPid(initPid: number): number {
  const candidates = [initPid, ...[...processTable()].filter(([, info]) => info.ppid === initPid).map(([pid]) => pid)];
  const agents = candidates.filter((pid) => {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      return comm !== "docker-init" && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("tetherd");
    } catch {
      return false;
    }
  });
  if (agents.length !== 1) {
    throw new Error(`expected one tetherd under the container's pid ${initPid}, found ${agents.length}`);
  }
  return agents[0];
}

async function dockerTarget(home: string): Promise<Target> {
  const sandboxes = new Sandboxes({ home });
  const labels = { "tether-bench.stress": String(process.pid) };
  const info = await sandboxes.create(BUSYBOX_IMAGE, { labels, network: "bridge" });
  const agent = await sandboxes.connect(info.id);
  const inspect = await dockerInspect(info.backendId || info.name);
  const created: string[] = [];
  return {
    name: `docker sandbox (${BUSYBOX_IMAGE})`,
    agent,
    connection: {
      socket: info.endpoint?.socket as string,
      accessToken: info.endpoint?.accessToken,
    },
    pid: containerAgentPid(inspect.pid),
    httpPort: CONTAINER_AGENT_PORT,
    dir: "/tmp/stress",
    async createRemove() {
      const other = await sandboxes.create(BUSYBOX_IMAGE, { labels, network: "none" });
      created.push(other.id);
      const client = await sandboxes.connect(other.id);
      try {
        await client.commands.run(["true"]);
      } finally {
        client.close();
        await sandboxes.remove(other.id);
        created.splice(created.indexOf(other.id), 1);
      }
    },
    async close() {
      agent.close();
      for (const id of [...created, info.id]) await sandboxes.remove(id).catch(() => {});
      sandboxes.close();
    },
  };
}

async function dockerInspect(name: string): Promise<{ pid: number }> {
  const child = spawn("docker", ["inspect", "--format", "{{.State.Pid}}", name], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const [code] = (await once(child, "exit")) as [number];
  if (code !== 0) throw new Error(`docker inspect ${name} exited ${code}`);
  return { pid: Number(out.trim()) };
}

function printReport(result: Awaited<ReturnType<typeof runLoad>>): void {
  const lines = [
    `${result.target}, ${(result.durationMs / 1000).toFixed(0)} s`,
    `${"requests".padEnd(24)}${"done".padStart(8)}${"errors".padStart(8)}${"p50 ms".padStart(10)}${"p99 ms".padStart(10)}`,
  ];
  for (const r of result.requests) {
    const t = r.timing;
    lines.push(
      `${r.kind.padEnd(24)}${String(r.done).padStart(8)}${String(r.errors).padStart(8)}${(t ? t.p50.toFixed(1) : "-").padStart(10)}${(t ? t.p99.toFixed(1) : "-").padStart(10)}`,
    );
    for (const e of r.firstErrors) lines.push(`    error: ${e}`);
  }
  const trend = result.samples.map((s) => `${s.rssMiB.toFixed(0)}/${s.fds}`).join(" ");
  lines.push(
    `agent RSS ${result.start.rssMiB.toFixed(1)} -> ${result.end.rssMiB.toFixed(1)} MiB, fds ${result.start.fds} -> ${result.end.fds}`,
    `  RSS MiB/fds every ${SAMPLE_MS / 1000} s: ${trend}`,
    `zombies under the agent: ${result.zombies.length}${result.zombies.length ? ` (${result.zombies.join(" ")})` : ""}; commands still running: ${result.stillRunning}`,
  );
  process.stdout.write(`${lines.join("\n")}\n\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { duration: { type: "string" }, target: { type: "string" } },
  });
  const durationMs = parseDuration(values.duration ?? process.env.STRESS_DURATION ?? "10m");
  const which = values.target ?? process.env.STRESS_TARGET ?? "both";
  if (!["agent", "docker", "both"].includes(which)) throw new Error(`--target ${which}: agent, docker or both`);
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-stress-"));
  const results: Awaited<ReturnType<typeof runLoad>>[] = [];
  try {
    if (which !== "docker") {
      log(`tetherd child process, ${durationMs / 1000} s`);
      const target = await agentTarget(dir);
      try {
        const result = await runLoad(target, durationMs);
        printReport(result);
        results.push(result);
      } finally {
        await target.close();
      }
    }
    if (which !== "agent") {
      log(`docker sandbox, ${durationMs / 1000} s`);
      const target = await dockerTarget(path.join(dir, "home"));
      try {
        const result = await runLoad(target, durationMs);
        printReport(result);
        results.push(result);
      } finally {
        await target.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const file = writeResults(path.resolve(here, "../../results"), {
    kind: "stress",
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, loadavg: os.loadavg() },
    results,
  });
  log(`results written to ${file}`);
  const bad = results.some((r) => r.zombies.length > 0 || r.requests.some((k) => k.errors > 0));
  if (bad) process.exitCode = 1;
}

await main();
