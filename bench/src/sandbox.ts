import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Sandboxes, type SandboxInfo } from "@tether/host";
import { type Agent, connect } from "@tether/sdk";
import Docker from "dockerode";
import { BUSYBOX_IMAGE } from "./docker.js";
import type { Row } from "./report.js";
import { summarize, type Timing, timeRuns } from "./stats.js";

const run = promisify(execFile);
// 21 of each, interleaved: with five, one slow container start moved the p50 ratio by 0.05,
// and with eleven two runs of the bench still differed by 0.04.
const CREATE_RUNS = Number(process.env.BENCH_CREATE_RUNS ?? 21);
const EXEC_RUNS = Number(process.env.BENCH_EXEC_RUNS ?? 300);
const DOCKER_EXEC_RUNS = Number(process.env.BENCH_DOCKER_RUNS ?? 30);
const COPY_BYTES = Number(process.env.BENCH_COPY_BYTES ?? 512 * (1 << 20));
// Best of three: the host's disk writeback can halve one copy's speed, either side's.
const COPY_RUNS = Number(process.env.BENCH_COPY_RUNS ?? 3);
const MB = 1e6;

/** What the sandbox measurements found, for the JSON results. */
export interface SandboxResults {
  /** Sandboxes.create of a docker sandbox until `true` has run through its agent. */
  tetherCreateToFirstExec: Timing;
  /** Docker's own create + start + exec of `true` through the Engine API (dockerode). */
  engineCreateStartExec: Timing;
  /** `agent.commands.run(["true"])` in one sandbox, and `docker exec` of it on the same container. */
  tetherExec: Timing;
  dockerExec: Timing;
  /** Best MB/s of each, and every run's, of `tether cp`'s code (Sandboxes.copier) beside `docker cp`. */
  copy: {
    bytes: number;
    tetherIn: number;
    tetherOut: number;
    dockerIn: number;
    dockerOut: number;
    runs: Record<"tetherIn" | "tetherOut" | "dockerIn" | "dockerOut", number[]>;
    /** How tether's files went: through the shared directories, or streamed (and why). */
    route: string;
  };
}

/**
 * The Docker sandbox rows: create-to-first-exec beside Docker's own create+start+exec,
 * exec round trips beside `docker exec` on the same container, and a 512 MiB copy each
 * way beside `docker cp`. Baselines are measured in the same run, interleaved.
 */
export async function measureSandbox(
  log: (text: string) => void,
): Promise<{ rows: Row[]; results: SandboxResults } | { skipped: string }> {
  const docker = new Docker();
  try {
    await docker.ping();
    await docker.getImage(BUSYBOX_IMAGE).inspect();
  } catch (err) {
    return { skipped: `Docker or ${BUSYBOX_IMAGE} not usable: ${(err as Error).message.split("\n")[0]}` };
  }
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-sandbox-"));
  const sandboxes = new Sandboxes({ home, maintainOnStart: false });
  const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-bench-copy-"));
  const made: string[] = [];
  try {
    log(
      `create to first exec (docker) beside the Engine API's create+start+exec: ${CREATE_RUNS} runs each, interleaved`,
    );
    const tetherSamples: number[] = [];
    const engineSamples: number[] = [];
    // Warm-up: the bundle, the image's layers, the engine's caches.
    await tetherCreateToFirstExec(sandboxes, made);
    await engineCreateStartExec(docker);
    for (let i = 0; i < CREATE_RUNS; i++) {
      tetherSamples.push(await tetherCreateToFirstExec(sandboxes, made));
      engineSamples.push(await engineCreateStartExec(docker));
    }

    const info = await sandboxes.create(BUSYBOX_IMAGE, { backend: "docker" });
    made.push(info.id);
    const agent = await agentOf(info);
    try {
      log(`exec round trip in one sandbox: ${EXEC_RUNS} runs; docker exec on the same container: ${DOCKER_EXEC_RUNS}`);
      const tetherExec = await timeRuns(() => agent.commands.run(["true"]), EXEC_RUNS, 30);
      const dockerExec = await timeRuns(() => run("docker", ["exec", info.backendId, "true"]), DOCKER_EXEC_RUNS, 3);

      log(`copy ${COPY_BYTES} bytes each way, best of ${COPY_RUNS}: tether cp's copier beside docker cp, interleaved`);
      const source = path.join(scratch, "big.bin");
      await writeTestFile(source, COPY_BYTES);
      const runs = {
        tetherIn: [] as number[],
        tetherOut: [] as number[],
        dockerIn: [] as number[],
        dockerOut: [] as number[],
      };
      const time = async (key: keyof typeof runs, fn: () => Promise<unknown>) => {
        runs[key].push(COPY_BYTES / MB / (await seconds(fn)));
      };
      // What `tether cp` runs: the same copier, through the shared directories when it can.
      const copier = await sandboxes.copier(info.id);
      try {
        for (let i = 0; i < COPY_RUNS; i++) {
          await time("tetherIn", () => copier.in(source, "/tmp/tether.bin"));
          await time("dockerIn", () => run("docker", ["cp", source, `${info.backendId}:/tmp/docker.bin`]));
          const tetherOut = path.join(scratch, "tether-out.bin");
          await time("tetherOut", () => copier.out("/tmp/tether.bin", tetherOut));
          const dockerOut = path.join(scratch, "docker-out.bin");
          await time("dockerOut", () => run("docker", ["cp", `${info.backendId}:/tmp/docker.bin`, dockerOut]));
          for (const file of [tetherOut, dockerOut]) {
            if (statSync(file).size !== COPY_BYTES) throw new Error(`${file} has ${statSync(file).size} bytes`);
            rmSync(file);
          }
        }
      } finally {
        copier.close();
      }
      const best = (values: number[]) => Math.max(...values);
      const copy: SandboxResults["copy"] = {
        bytes: COPY_BYTES,
        tetherIn: best(runs.tetherIn),
        tetherOut: best(runs.tetherOut),
        dockerIn: best(runs.dockerIn),
        dockerOut: best(runs.dockerOut),
        runs,
        route: copier.streamedBecause
          ? `streamed: ${copier.streamedBecause}`
          : "shared directories (share/ in, run/ out)",
      };

      const results: SandboxResults = {
        tetherCreateToFirstExec: summarize(tetherSamples),
        engineCreateStartExec: summarize(engineSamples),
        tetherExec,
        dockerExec,
        copy,
      };
      return { rows: rowsOf(results), results };
    } finally {
      agent.close();
    }
  } finally {
    for (const id of made) await sandboxes.remove(id).catch(() => {});
    sandboxes.close();
    rmSync(home, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  }
}

function rowsOf(r: SandboxResults): Row[] {
  const create = r.tetherCreateToFirstExec.p50;
  const engine = r.engineCreateStartExec.p50;
  const speedup = r.dockerExec.p50 / r.tetherExec.p50;
  const copyRow = (way: "in" | "out", tether: number, docker: number): Row => ({
    metric: `copy ${(r.copy.bytes / (1 << 20)).toFixed(0)} MiB ${way} (tether cp vs docker cp)`,
    unit: "MB/s",
    tether,
    baseline: docker,
    baselineName: "docker cp",
    ratio: tether / docker,
    target: ">= 1.5x docker cp",
    met: tether >= 1.5 * docker,
    note: r.copy.route.startsWith("streamed") ? "streamed" : "shared dirs",
  });
  return [
    {
      metric: "create to first exec p50 (docker sandbox)",
      unit: "ms",
      tether: create,
      baseline: engine,
      baselineName: "engine create+start+exec",
      ratio: create / engine,
      target: "<= 1.2x engine",
      met: create <= 1.2 * engine,
    },
    {
      metric: "exec true p50 in a sandbox vs docker exec",
      unit: "ms",
      tether: r.tetherExec.p50,
      baseline: r.dockerExec.p50,
      baselineName: "docker exec",
      ratio: r.tetherExec.p50 / r.dockerExec.p50,
      target: ">= 20x faster",
      met: speedup >= 20,
      note: `${speedup.toFixed(1)}x faster`,
    },
    copyRow("in", r.copy.tetherIn, r.copy.dockerIn),
    copyRow("out", r.copy.tetherOut, r.copy.dockerOut),
  ];
}

/** Sandboxes.create until `true` has run through the new sandbox's agent; the removal is not timed. */
async function tetherCreateToFirstExec(sandboxes: Sandboxes, made: string[]): Promise<number> {
  const start = process.hrtime.bigint();
  const info = await sandboxes.create(BUSYBOX_IMAGE, { backend: "docker" });
  made.push(info.id);
  const agent = await agentOf(info);
  await agent.commands.run(["true"]);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  agent.close();
  await sandboxes.remove(info.id);
  made.splice(made.indexOf(info.id), 1);
  return ms;
}

/** A client for the sandbox's agent, from what create returned (no second look-up). */
function agentOf(info: SandboxInfo): Promise<Agent> {
  if (!info.endpoint) throw new Error(`sandbox ${info.id} has no endpoint`);
  return connect({ socket: info.endpoint.socket, accessToken: info.endpoint.accessToken });
}

/** Docker's own path to a first exec: create, start, exec `true` and wait for its end, all through the Engine API. */
async function engineCreateStartExec(docker: Docker): Promise<number> {
  const start = process.hrtime.bigint();
  const container = await docker.createContainer({
    Image: BUSYBOX_IMAGE,
    Cmd: ["sleep", "3600"],
    HostConfig: { NetworkMode: "none", Init: true },
  });
  try {
    await container.start();
    const exec = await container.exec({ Cmd: ["true"], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: false });
    await new Promise<void>((resolve, reject) => {
      stream.on("end", resolve).on("close", resolve).on("error", reject);
      stream.resume();
    });
    const { ExitCode } = await exec.inspect();
    if (ExitCode !== 0) throw new Error(`docker exec true exited ${ExitCode}`);
    return Number(process.hrtime.bigint() - start) / 1e6;
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}

async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** A file of `bytes` incompressible bytes (one random MiB repeated). */
async function writeTestFile(file: string, bytes: number): Promise<void> {
  const block = randomBytes(1 << 20);
  const out = createWriteStream(file);
  for (let written = 0; written < bytes; written += block.length) {
    const chunk = block.subarray(0, Math.min(block.length, bytes - written));
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
