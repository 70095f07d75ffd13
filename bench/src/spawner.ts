import { spawn as nodeSpawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { type AgentProcess, spawnAgentProcess } from "@tether/agent";
import { Agent } from "@tether/sdk";
import { spawn as addonSpawn } from "@tether/spawn";
import type { Row } from "./report.js";
import { summarize, type Timing } from "./stats.js";

const RUNS = Number(process.env.BENCH_SPAWNER_RUNS ?? 300);
const WARMUP = 30;
const env = Object.entries(process.env).map(([key, value]) => `${key}=${value}`);

/** `true` the way the agent runs a pipe child, through Node's child_process: until exit and both pipes closed. */
function nodeTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = nodeSpawn("true", [], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    child.once("error", reject);
    let pending = 3;
    const done = () => --pending === 0 && resolve();
    child.once("exit", done);
    for (const stream of [child.stdout, child.stderr]) stream.once("close", done).resume();
  });
}

/** The same through @tether/spawn. */
function addonTrue(): Promise<void> {
  return new Promise((resolve) => {
    let pending = 3;
    const done = () => --pending === 0 && resolve();
    const child = addonSpawn("true", ["true"], { env, cwd: "/", setsid: true, stdin: false }, done);
    for (const fd of [child.stdout, child.stderr]) {
      new net.Socket({ fd, readable: true, writable: false }).once("close", done).resume();
    }
  });
}

/** Times two things alternately, so both see the same load on a shared machine. */
async function interleaved(a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[Timing, Timing]> {
  const samples: [number[], number[]] = [[], []];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    for (const [j, fn] of [a, b].entries()) {
      const start = process.hrtime.bigint();
      await fn();
      if (i >= WARMUP) samples[j].push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  return [summarize(samples[0]), summarize(samples[1])];
}

function row(metric: string, ours: number, theirs: number, baselineName: string): Row {
  return {
    metric,
    unit: "ms",
    tether: ours,
    baseline: theirs,
    baselineName,
    ratio: ours / theirs,
    target: "",
    met: null,
  };
}

/**
 * @tether/spawn against Node's child_process: `true` in this process, then exec `true`
 * through two agents alike but for their spawner (TETHER_SPAWNER=node for the baseline).
 */
export async function measureSpawners(log: (text: string) => void) {
  log(`spawners: ${RUNS} interleaved runs each after ${WARMUP} warm-up`);
  const [addon, node] = await interleaved(addonTrue, nodeTrue);
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-bench-spawner-"));
  const agents: AgentProcess[] = [];
  const clients: Agent[] = [];
  try {
    for (const spawner of ["vfork", "node"]) {
      const socket = path.join(dir, `${spawner}.sock`);
      process.env.TETHER_SPAWNER = spawner;
      agents.push(await spawnAgentProcess(["--port", "0", "--socket", socket, "--log-level", "info"]));
      clients.push(new Agent({ socket }));
    }
    delete process.env.TETHER_SPAWNER;
    await Promise.all(clients.map((c) => c.health()));
    const [vforkAgent, nodeAgent] = await interleaved(
      () => clients[0].commands.run(["true"]),
      () => clients[1].commands.run(["true"]),
    );
    const rows = [
      row("spawn true p50, in process (@tether/spawn)", addon.p50, node.p50, "node spawn"),
      row("exec true p50 (unix), @tether/spawn agent", vforkAgent.p50, nodeAgent.p50, "node-spawn agent"),
      row("exec true p99 (unix), @tether/spawn agent", vforkAgent.p99, nodeAgent.p99, "node-spawn agent"),
    ];
    return { rows, timings: { addon, node, vforkAgent, nodeAgent } };
  } finally {
    delete process.env.TETHER_SPAWNER;
    for (const c of clients) c.close();
    await Promise.all(agents.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}
