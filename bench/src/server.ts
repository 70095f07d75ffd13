import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandboxes } from "@tether/host";
import Docker from "dockerode";
import { Sandbox } from "e2b";
import { removeHome } from "./bench-home.js";
import type { Row } from "./report.js";
import { type ServerProcess, startServerProcess } from "./server-process.js";
import { summarize, type Timing } from "./stats.js";

const DEBIAN = "tether-test/debian";
const CREATE_RUNS = Number(process.env.BENCH_SERVER_CREATE_RUNS ?? 11);
const EXEC_RUNS = Number(process.env.BENCH_SERVER_EXEC_RUNS ?? 200);
const STREAM_BYTES = Number(process.env.BENCH_SERVER_STREAM_BYTES ?? 1 << 30);
const MB = 1e6;

export interface ServerResults {
  /** e2b SDK `Sandbox.create()` + `commands.run("true")` through tether serve. */
  e2bCreateAndRun: Timing;
  /** The Engine API's create + start + exec `true` of the same image. */
  engineCreateStartExec: Timing;
  /** `commands.run("true")` through the server's proxy, and straight at the agent's TCP port. */
  execThroughProxy: Timing;
  execStraight: Timing;
  /** MB/s of a command's stdout through the proxy, and straight. */
  streamThroughProxy: number;
  streamStraight: number;
}

async function engineCreateStartExec(docker: Docker): Promise<number> {
  const start = process.hrtime.bigint();
  const container = await docker.createContainer({
    Image: DEBIAN,
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
    return Number(process.hrtime.bigint() - start) / 1e6;
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}

/**
 * The e2b SDK keeps a command's whole stdout in one string, which V8 caps at 512 MiB, so
 * the bytes go out in commands of at most this many each (their times summed).
 */
const STREAM_COMMAND_BYTES = 256 << 20;

/** Seconds to stream `bytes` of a command's stdout. */
async function streamSeconds(sandbox: Sandbox, bytes: number): Promise<number> {
  let got = 0;
  const start = process.hrtime.bigint();
  await sandbox.commands.run(`head -c ${bytes} /dev/zero`, {
    onStdout: (d) => {
      got += d.length;
    },
    timeoutMs: 0,
  });
  if (got !== bytes) throw new Error(`streamed ${got} of ${bytes} bytes`);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * MB/s of each side's commands, taken in turn (which goes first alternates): the
 * machine's load changes over a run, and one side's commands all after the other's
 * measured that change as much as the proxy (see timeInTurn).
 */
async function streamRatesInTurn(a: Sandbox, b: Sandbox): Promise<[number, number]> {
  const seconds = [0, 0];
  let turn = 0;
  for (let left = STREAM_BYTES; left > 0; left -= STREAM_COMMAND_BYTES, turn++) {
    const bytes = Math.min(left, STREAM_COMMAND_BYTES);
    const order = turn % 2 === 0 ? [0, 1] : [1, 0];
    for (const side of order) seconds[side] += await streamSeconds(side === 0 ? a : b, bytes);
  }
  return [STREAM_BYTES / MB / seconds[0], STREAM_BYTES / MB / seconds[1]];
}

/**
 * Times two calls in turn, one run of each at a time, the first of the pair alternating.
 * Run as two blocks, the same proxy against straight comparison came out anywhere from
 * -6.6 to +12.5 ms at p50 on a shared 2-core machine (load 3-5) depending on which block
 * ran first; in turn, +1.7 ms in the same minutes.
 */
async function timeInTurn(
  a: () => Promise<unknown>,
  b: () => Promise<unknown>,
  runs: number,
  warmup: number,
): Promise<[Timing, Timing]> {
  for (let i = 0; i < warmup; i++) {
    await a();
    await b();
  }
  const samples: [number[], number[]] = [[], []];
  const fns = [a, b];
  for (let i = 0; i < runs; i++) {
    for (const side of i % 2 === 0 ? [0, 1] : [1, 0]) {
      const start = process.hrtime.bigint();
      await fns[side]();
      samples[side].push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  return [summarize(samples[0]), summarize(samples[1])];
}

/**
 * tether serve's rows: the e2b SDK's create + first command through the server beside the
 * Engine API's create+start+exec of the same image; exec round trips and a command's
 * stdout through the server's proxy beside the same SDK straight at the agent; each pair
 * taken in turn.
 */
export async function measureServer(
  log: (text: string) => void,
): Promise<{ rows: Row[]; results: ServerResults } | { skipped: string }> {
  const docker = new Docker();
  try {
    await docker.ping();
    await docker.getImage(DEBIAN).inspect();
  } catch (err) {
    return { skipped: `Docker or ${DEBIAN} not usable: ${(err as Error).message.split("\n")[0]}` };
  }
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-server-"));
  const sandboxes = new Sandboxes({ home });
  let server: ServerProcess | undefined;
  try {
    server = await startServerProcess(home, [
      { name: "debian", image: DEBIAN },
      // The straight comparison needs the agent on TCP: a sandbox with a network.
      { name: "debian-net", image: DEBIAN, defaults: { network: "bridge" } },
    ]);
    const opts = { apiKey: server.key, apiUrl: server.url, sandboxUrl: server.url };
    log(`e2b create + run true through tether serve beside the Engine API: ${CREATE_RUNS} runs each, interleaved`);
    const create = async () => {
      const start = process.hrtime.bigint();
      const sandbox = await Sandbox.create("debian", opts);
      await sandbox.commands.run("true");
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      await sandbox.kill();
      return ms;
    };
    await create();
    await engineCreateStartExec(docker);
    const e2bSamples: number[] = [];
    const engineSamples: number[] = [];
    for (let i = 0; i < CREATE_RUNS; i++) {
      e2bSamples.push(await create());
      engineSamples.push(await engineCreateStartExec(docker));
    }

    const proxied = await Sandbox.create("debian-net", opts);
    const info = await sandboxes.get(proxied.sandboxId);
    const agentUrl = info.endpoint?.url;
    if (!agentUrl) throw new Error("the bridge sandbox has no agent URL");
    const straight = await Sandbox.connect(proxied.sandboxId, { ...opts, sandboxUrl: agentUrl });
    log(`exec true through the proxy and straight at the agent: ${EXEC_RUNS} runs each, in turn`);
    const [execThroughProxy, execStraight] = await timeInTurn(
      () => proxied.commands.run("true"),
      () => straight.commands.run("true"),
      EXEC_RUNS,
      20,
    );
    log(`stdout of ${STREAM_BYTES} bytes through the proxy and straight, in turn`);
    const [streamThroughProxy, streamStraight] = await streamRatesInTurn(proxied, straight);
    await proxied.kill();

    const results: ServerResults = {
      e2bCreateAndRun: summarize(e2bSamples),
      engineCreateStartExec: summarize(engineSamples),
      execThroughProxy,
      execStraight,
      streamThroughProxy,
      streamStraight,
    };
    const createRatio = results.e2bCreateAndRun.p50 / results.engineCreateStartExec.p50;
    const execDelta = execThroughProxy.p50 - execStraight.p50;
    const streamRatio = streamThroughProxy / streamStraight;
    const rows: Row[] = [
      {
        metric: "e2b create + run true via server p50",
        unit: "ms",
        tether: results.e2bCreateAndRun.p50,
        baseline: results.engineCreateStartExec.p50,
        baselineName: "engine create+start+exec",
        ratio: createRatio,
        target: "<= 1.3x",
        met: createRatio <= 1.3,
      },
      {
        metric: "e2b exec true p50 via proxy",
        unit: "ms",
        tether: execThroughProxy.p50,
        baseline: execStraight.p50,
        baselineName: "straight to agent",
        ratio: execThroughProxy.p50 / execStraight.p50,
        target: "<= +1 ms",
        met: execDelta <= 1,
      },
      {
        metric: "e2b stdout via proxy",
        unit: "MB/s",
        tether: streamThroughProxy,
        baseline: streamStraight,
        baselineName: "straight to agent",
        ratio: streamRatio,
        target: ">= 0.7x",
        met: streamRatio >= 0.7,
      },
    ];
    return { rows, results };
  } finally {
    await server?.stop();
    await removeHome(sandboxes);
  }
}
