import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type AgentProcess, spawnAgentProcess } from "@tether/agent";
import { Agent } from "@tether/sdk";
import { measureBackends } from "./backends.js";
import { spawnBundledAgent, startBundledAgent } from "./bundled-agent.js";
import { measureConcurrentCreates } from "./creates.js";
import { measureDensity } from "./density.js";
import { type DockerContainer, startBusybox } from "./docker.js";
import { type Row, renderTable, writeResults } from "./report.js";
import { measureSandbox } from "./sandbox.js";
import { measureServer } from "./server.js";
import { measureServerScale } from "./server-scale.js";
import { measureSpawners } from "./spawner.js";
import { type Timing, timeRuns } from "./stats.js";
import { measureTerminal } from "./terminal.js";
import { BUNDLED_AGENT_LABEL, HOST_AGENT_LABEL, measureTunnels } from "./tunnel.js";
import { measureVm } from "./vm.js";

const EXEC_RUNS = Number(process.env.BENCH_EXEC_RUNS ?? 300);
const EXEC_WARMUP = 30;
const DOCKER_RUNS = Number(process.env.BENCH_DOCKER_RUNS ?? 30);
const STREAM_BYTES = Number(process.env.BENCH_STREAM_BYTES ?? 1 << 30);
// Best of a few runs each, for tether and docker alike: other load on the machine only slows a run down.
const STREAM_RUNS = Number(process.env.BENCH_STREAM_RUNS ?? 2);
// Spelled out: busybox's head does not take "1G".
const STREAM_ARGV = ["sh", "-c", `head -c ${STREAM_BYTES} /dev/zero`];
const MB = 1e6;
const MiB = 1 << 20;

const log = (text: string) => process.stderr.write(`bench: ${text}\n`);
/** How long a fresh agent is left alone before its memory counts as idle (startup garbage settles). */
const IDLE_SETTLE_MS = 1500;

/** The idle memory of what ships in sandboxes (see spawnBundledAgent). */
async function bundledIdleRss(dir: string): Promise<{ rss: number; rssAnon: number }> {
  const agent = await spawnBundledAgent([
    "--no-tcp",
    "--socket",
    path.join(dir, "bundled.sock"),
    "--log-level",
    "info",
  ]);
  try {
    await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
    return { rss: agent.rss(), rssAnon: agent.rssAnon() };
  } finally {
    await agent.stop();
  }
}

function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("true", { stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", () => resolve());
  });
}

/** Streams the 1 GiB through tetherd, counting bytes, sampling the agent's RSS meanwhile. */
async function tetherThroughput(client: Agent, agent: AgentProcess) {
  let bytes = 0;
  let maxRss = agent.rss();
  const agentCpu = agent.cpuSeconds();
  const clientCpu = process.cpuUsage();
  const sampler = setInterval(() => {
    maxRss = Math.max(maxRss, agent.rss());
  }, 50);
  const start = process.hrtime.bigint();
  try {
    await client.commands.run(STREAM_ARGV, {
      keepOutput: false,
      onStdout: (data) => {
        bytes += data.length;
      },
    });
  } finally {
    clearInterval(sampler);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (bytes !== STREAM_BYTES) throw new Error(`tetherd delivered ${bytes} of ${STREAM_BYTES} bytes`);
  const used = process.cpuUsage(clientCpu);
  const gib = bytes / (1 << 30);
  return {
    bytes,
    seconds,
    mbPerSecond: bytes / MB / seconds,
    maxRss,
    agentCpuSecondsPerGiB: (agent.cpuSeconds() - agentCpu) / gib,
    clientCpuSecondsPerGiB: (used.user + used.system) / 1e6 / gib,
  };
}

async function dockerThroughput(container: DockerContainer) {
  const start = process.hrtime.bigint();
  const bytes = await container.execCountingStdout(STREAM_ARGV);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (bytes !== STREAM_BYTES) throw new Error(`docker exec delivered ${bytes} of ${STREAM_BYTES} bytes`);
  return { bytes, seconds, mbPerSecond: bytes / MB / seconds };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-bench-"));
  let agent: AgentProcess | undefined;
  let container: DockerContainer | undefined;
  const clients: Agent[] = [];
  try {
    log("starting tetherd as a child process");
    const socket = path.join(dir, "agent.sock");
    agent = await spawnAgentProcess(["--port", "0", "--socket", socket, "--log-level", "info"]);
    // Let startup garbage settle before calling the agent idle.
    await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
    const idleRss = agent.rss();
    const idleRssAnon = agent.rssAnon();
    log("idle memory of the bundle's tetherd on the bundle's node");
    const bundled = await bundledIdleRss(dir);

    const unix = new Agent({ socket });
    if (!agent.url) throw new Error("tetherd did not report its TCP address");
    const tcp = new Agent({ url: agent.url });
    clients.push(unix, tcp);
    await Promise.all([unix.health(), tcp.health()]);

    log(`exec round trips: ${EXEC_RUNS} runs each after ${EXEC_WARMUP} warm-up`);
    const spawnTiming = await timeRuns(spawnTrue, EXEC_RUNS, EXEC_WARMUP);
    const unixTiming = await timeRuns(() => unix.commands.run(["true"]), EXEC_RUNS, EXEC_WARMUP);
    const tcpTiming = await timeRuns(() => tcp.commands.run(["true"]), EXEC_RUNS, EXEC_WARMUP);

    const docker = await startBusybox();
    let dockerTiming: Timing | null = null;
    let dockerStream: Awaited<ReturnType<typeof dockerThroughput>> | null = null;
    const dockerSkipped = "skipped" in docker ? docker.skipped : undefined;
    if ("skipped" in docker) {
      log(`docker rows skipped: ${docker.skipped}`);
    } else {
      container = docker;
      log(`docker exec: ${DOCKER_RUNS} runs after 3 warm-up`);
      dockerTiming = await timeRuns(() => docker.exec(["true"]), DOCKER_RUNS, 3);
    }

    log(`stdout throughput: ${STREAM_BYTES} bytes of /dev/zero, best of ${STREAM_RUNS}`);
    const tetherStreams: Awaited<ReturnType<typeof tetherThroughput>>[] = [];
    const dockerStreams: Awaited<ReturnType<typeof dockerThroughput>>[] = [];
    for (let i = 0; i < STREAM_RUNS; i++) {
      tetherStreams.push(await tetherThroughput(unix, agent));
      if (container) dockerStreams.push(await dockerThroughput(container));
    }
    const best = <T extends { mbPerSecond: number }>(runs: T[]) =>
      runs.reduce((a, b) => (b.mbPerSecond > a.mbPerSecond ? b : a));
    const tetherStream = best(tetherStreams);
    dockerStream = dockerStreams.length > 0 ? best(dockerStreams) : null;
    await new Promise((r) => setTimeout(r, 1500));
    const rssAfterLoad = agent.rss();
    const peakRss = agent.peakRss();

    const ms = "ms";
    const execRow = (metric: string, t: number, base: number, target: boolean): Row => ({
      metric,
      unit: ms,
      tether: t,
      baseline: base,
      baselineName: "spawn",
      ratio: t / base,
      target: target ? "<= spawn + 1 ms" : "",
      met: target ? t <= base + 1 : null,
    });
    // RssAnon: the agent's own pages, without the node binary's file-backed ones (shared by every sandbox of a host).
    const anonRow = (metric: string, bytes: number): Row => ({
      metric,
      unit: "MiB",
      tether: bytes / MiB,
      baseline: null,
      baselineName: "",
      ratio: null,
      target: "",
      met: null,
    });
    const rows: Row[] = [
      execRow("exec true p50 (unix)", unixTiming.p50, spawnTiming.p50, true),
      execRow("exec true p99 (unix)", unixTiming.p99, spawnTiming.p99, false),
      execRow("exec true p50 (tcp)", tcpTiming.p50, spawnTiming.p50, true),
      execRow("exec true p99 (tcp)", tcpTiming.p99, spawnTiming.p99, false),
      {
        metric: "exec true p50 vs docker exec",
        unit: ms,
        tether: unixTiming.p50,
        baseline: dockerTiming?.p50 ?? null,
        baselineName: "docker",
        ratio: dockerTiming ? unixTiming.p50 / dockerTiming.p50 : null,
        target: "",
        met: null,
        ...(dockerSkipped ? { note: dockerSkipped } : {}),
      },
      {
        metric: "exec true p99 vs docker exec",
        unit: ms,
        tether: unixTiming.p99,
        baseline: dockerTiming?.p99 ?? null,
        baselineName: "docker",
        ratio: dockerTiming ? unixTiming.p99 / dockerTiming.p99 : null,
        target: "",
        met: null,
      },
      {
        metric: "stdout throughput (unix)",
        unit: "MB/s",
        tether: tetherStream.mbPerSecond,
        baseline: dockerStream?.mbPerSecond ?? null,
        baselineName: "docker",
        ratio: dockerStream ? tetherStream.mbPerSecond / dockerStream.mbPerSecond : null,
        target: ">= 2.5x docker exec",
        met: dockerStream ? tetherStream.mbPerSecond >= 2.5 * dockerStream.mbPerSecond : null,
        ...(dockerSkipped ? { note: dockerSkipped } : {}),
      },
      {
        metric: "agent CPU per GiB of output",
        unit: "s",
        tether: tetherStream.agentCpuSecondsPerGiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "",
        met: null,
      },
      {
        metric: "client CPU per GiB of output",
        unit: "s",
        tether: tetherStream.clientCpuSecondsPerGiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "",
        met: null,
      },
      {
        metric: `agent RSS idle (dist, host node ${process.version})`,
        unit: "MiB",
        tether: idleRss / MiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "< 50 MiB",
        met: idleRss < 50 * MiB,
      },
      {
        // What ships: the bundle's tetherd on its Node. The file-backed rest of VmRSS is
        // mostly the node binary's pages, shared by every sandbox of a host.
        metric: "agent RSS idle (bundle, its node)",
        unit: "MiB",
        tether: bundled.rss / MiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "< 50 MiB",
        met: bundled.rss < 50 * MiB,
      },
      anonRow("agent RSS idle, anon part (dist)", idleRssAnon),
      anonRow("agent RSS idle, anon part (bundle)", bundled.rssAnon),
      {
        metric: "agent RSS max under load",
        unit: "MiB",
        tether: Math.max(...tetherStreams.map((r) => r.maxRss)) / MiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "",
        met: null,
      },
      {
        metric: "agent RSS idle after load",
        unit: "MiB",
        tether: rssAfterLoad / MiB,
        baseline: null,
        baselineName: "",
        ratio: null,
        target: "",
        met: null,
      },
    ];

    const spawners = await measureSpawners(log);
    rows.push(...spawners.rows);
    const bundledForTunnels = await startBundledAgent(dir, "bundled-tunnel");
    const tunnels = await measureTunnels(
      [
        { label: HOST_AGENT_LABEL, client: unix, agent },
        { label: BUNDLED_AGENT_LABEL, client: bundledForTunnels.client, agent: bundledForTunnels.agent },
      ],
      log,
    ).finally(() => bundledForTunnels.stop());
    rows.push(...tunnels.rows);
    const backends = await measureBackends(log);
    rows.push(...backends.rows);
    const sandbox = await measureSandbox(log);
    if ("skipped" in sandbox) log(`docker sandbox rows skipped: ${sandbox.skipped}`);
    else rows.push(...sandbox.rows);
    const served = await measureServer(log);
    if ("skipped" in served) log(`tether serve rows skipped: ${served.skipped}`);
    else rows.push(...served.rows);
    const creates = await measureConcurrentCreates(log);
    if ("skipped" in creates) log(`concurrent create rows skipped: ${creates.skipped}`);
    else rows.push(...creates.rows);
    const density = await measureDensity(log);
    if ("skipped" in density) log(`memory per sandbox rows skipped: ${density.skipped}`);
    else rows.push(...density.rows);
    const terminal = await measureTerminal(log);
    if ("skipped" in terminal) log(`terminal rows skipped: ${terminal.skipped}`);
    else rows.push(...terminal.rows);
    const scaled = await measureServerScale(log);
    if ("skipped" in scaled) log(`tether serve scale rows skipped: ${scaled.skipped}`);
    else rows.push(...scaled.rows);
    const vm = await measureVm(log);
    if ("skipped" in vm) log(`vm rows skipped: ${vm.skipped}`);
    else rows.push(...vm.rows);

    process.stdout.write(`${renderTable(rows)}\n`);
    process.stdout.write(
      `\nload average during the run: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}\n`,
    );
    if (dockerSkipped) process.stdout.write(`\ndocker rows not measured: ${dockerSkipped}\n`);
    const file = writeResults(path.resolve(fileURLToPath(import.meta.url), "../../../results"), {
      date: new Date().toISOString(),
      host: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, kernel: os.release() },
      settings: { execRuns: EXEC_RUNS, execWarmup: EXEC_WARMUP, dockerRuns: DOCKER_RUNS, streamBytes: STREAM_BYTES },
      exec: { spawn: spawnTiming, tetherUnix: unixTiming, tetherTcp: tcpTiming, dockerExec: dockerTiming },
      throughput: { tetherUnix: tetherStream, dockerExec: dockerStream },
      throughputRuns: { tetherUnix: tetherStreams, dockerExec: dockerStreams },
      spawners: spawners.timings,
      tunnels: { ...tunnels, rows: undefined },
      createToFirstExec: backends.timings,
      dockerSandbox: "skipped" in sandbox ? { skipped: sandbox.skipped } : sandbox.results,
      server: "skipped" in served ? { skipped: served.skipped } : served.results,
      concurrentCreates: "skipped" in creates ? { skipped: creates.skipped } : creates.results,
      density: "skipped" in density ? { skipped: density.skipped } : density.results,
      terminal: "skipped" in terminal ? { skipped: terminal.skipped } : terminal.results,
      serverScale: "skipped" in scaled ? { skipped: scaled.skipped } : scaled.results,
      vm: "skipped" in vm ? { skipped: vm.skipped } : vm.results,
      load: os.loadavg(),
      rss: {
        idle: idleRss,
        idleAnon: idleRssAnon,
        bundledIdle: bundled.rss,
        bundledIdleAnon: bundled.rssAnon,
        maxUnderLoad: Math.max(...tetherStreams.map((r) => r.maxRss)),
        afterLoad: rssAfterLoad,
        peak: peakRss,
      },
      dockerSkipped: dockerSkipped ?? null,
      rows,
    });
    process.stdout.write(`\nresults written to ${path.relative(process.cwd(), file)}\n`);
  } finally {
    for (const c of clients) c.close();
    await container?.remove();
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.stack : err}`);
  process.exit(1);
});
