import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { type BackendKind, bwrapStatus, dockerStatus, Sandboxes } from "@tether/host";
import { BUSYBOX_IMAGE } from "./docker.js";
import type { Row } from "./report.js";
import { summarize, type Timing } from "./stats.js";

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_CREATE_RUNS ?? 5);
/** The backends measured, in the rows' order: the lightest first. */
const MEASURED = ["local", "bwrap", "docker"] as const satisfies readonly BackendKind[];

/** What create-to-first-exec measured, per backend (null: not measured, with the reason). */
export interface BackendTimings {
  local: Timing | null;
  bwrap: Timing | null;
  docker: Timing | null;
  /** `docker run --rm busybox true`: Docker's own create-to-exit, the baseline. */
  dockerRun: Timing | null;
  skipped: Record<string, string>;
}

async function timeEach(runs: number, fn: () => Promise<void>): Promise<Timing> {
  await fn(); // warm-up: caches, the agent bundle, the image's layers
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return summarize(samples);
}

/**
 * Create-to-first-exec for each backend: from `Sandboxes.create` until `true` has run
 * through the new sandbox's agent (removal not counted), beside `docker run --rm`.
 */
export async function measureBackends(log: (text: string) => void): Promise<{ rows: Row[]; timings: BackendTimings }> {
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-home-"));
  const sandboxes = new Sandboxes({ home, maintainOnStart: false });
  const timings: BackendTimings = { local: null, bwrap: null, docker: null, dockerRun: null, skipped: {} };
  const [docker, bwrap] = await Promise.all([dockerStatus(), bwrapStatus()]);
  const hasImage =
    docker.available &&
    (await run("docker", ["image", "inspect", BUSYBOX_IMAGE]).then(
      () => true,
      () => false,
    ));
  if (!docker.available) timings.skipped.docker = docker.reason;
  else if (!hasImage) timings.skipped.docker = `image ${BUSYBOX_IMAGE} is missing`;
  if (!bwrap.available) timings.skipped.bwrap = bwrap.reason;
  const firstExec = async (image: string | undefined, backend: BackendKind) => {
    const start = process.hrtime.bigint();
    const info = await sandboxes.create(image, { backend });
    const agent = await sandboxes.connect(info.id);
    await agent.commands.run(["true"]);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    agent.close();
    await sandboxes.remove(info.id);
    return ms;
  };
  try {
    for (const backend of MEASURED) {
      if (timings.skipped[backend]) {
        log(`create to first exec (${backend}) skipped: ${timings.skipped[backend]}`);
        continue;
      }
      log(`create to first exec (${backend}): ${RUNS} runs after 1 warm-up`);
      const image = backend === "docker" ? BUSYBOX_IMAGE : undefined;
      timings[backend] = await timeEach(RUNS, async () => {
        await firstExec(image, backend);
      });
    }
    if (hasImage) {
      log(`docker run --rm ${BUSYBOX_IMAGE} true: ${RUNS} runs after 1 warm-up`);
      timings.dockerRun = await timeEach(RUNS, async () => {
        await run("docker", ["run", "--rm", "--network", "none", BUSYBOX_IMAGE, "true"]);
      });
    }
  } finally {
    sandboxes.close();
    rmSync(home, { recursive: true, force: true });
  }
  const baseline = timings.dockerRun?.p50 ?? null;
  const rows: Row[] = MEASURED.map((backend) => ({
    metric: `create to first exec p50 (${backend})`,
    unit: "ms",
    tether: timings[backend]?.p50 ?? null,
    baseline,
    baselineName: "docker run",
    ratio: timings[backend] && baseline ? (timings[backend]?.p50 ?? 0) / baseline : null,
    target: "",
    met: null,
    ...(timings.skipped[backend] ? { note: timings.skipped[backend] } : {}),
  }));
  return { rows, timings };
}
