import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { dockerStatus, Sandboxes } from "@tether/host";
import { removeHome } from "./bench-home.js";
import { BUSYBOX_IMAGE } from "./docker.js";
import type { Row } from "./report.js";

const run = promisify(execFile);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT_CREATES ?? 10);
/** The `tether` to run; BENCH_TETHER_CLI names another build's bin/tether.js (to compare two in one sitting). */
const TETHER_CLI =
  process.env.BENCH_TETHER_CLI ??
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../packages/cli/bin/tether.js");

export interface ConcurrentCreates {
  concurrent: number;
  /** Wall time until all `tether create` processes exited, in a fresh TETHER_HOME (ms). */
  tetherFresh: number;
  /** The same again in that home, now warm. */
  tetherWarm: number;
  /** Wall time until all `docker run -d` exited (ms). */
  dockerRun: number;
  /** The same docker run again, between the two library rows. */
  dockerRunBesideLibrary: number;
  /** N concurrent `Sandboxes.create` in one process (our library, as an SDK user calls it), in another fresh home (ms). */
  libraryFresh: number;
  /** The same again in that home. */
  libraryWarm: number;
}

/** Starts `argv` `n` times at once; resolves with the wall time until all exited, and their stdout lines. */
async function concurrently(n: number, argv: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; out: string[] }> {
  const start = process.hrtime.bigint();
  const out = await Promise.all(
    Array.from({ length: n }, async () => {
      const child = spawn(argv[0], argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout?.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr?.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const [code] = (await once(child, "exit")) as [number | null];
      if (code !== 0) throw new Error(`${argv.slice(0, 3).join(" ")} exited ${code}: ${stderr.trim()}`);
      return stdout.trim();
    }),
  );
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, out };
}

/** N concurrent `Sandboxes.create` in this process; resolves with the wall time until all were ready. */
async function concurrentlyInProcess(n: number, sandboxes: Sandboxes, label: string): Promise<number> {
  const [key, value] = label.split("=");
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: n }, () => sandboxes.create(BUSYBOX_IMAGE, { labels: { [key]: value } })));
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * N concurrent `tether create` CLI processes (each its own process, as N users or scripts
 * would start them) beside N concurrent `docker run -d` of the same image: the first in
 * a fresh TETHER_HOME, then again in the same home. Then the same creates through our
 * library in one process (`Sandboxes.create`, as the SDK's users make them), where no
 * Node process starts per create: what the CLI's processes cost shows as the difference.
 */
export async function measureConcurrentCreates(
  log: (text: string) => void,
): Promise<{ rows: Row[]; results: ConcurrentCreates } | { skipped: string }> {
  const status = await dockerStatus();
  if (!status.available) return { skipped: `docker: ${status.reason}` };
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-creates-"));
  const libraryHome = mkdtempSync(path.join(os.tmpdir(), "tether-bench-creates-lib-"));
  const library = new Sandboxes({ home: libraryHome });
  const env = { ...process.env, TETHER_HOME: home };
  const label = `tether-bench.creates=${process.pid}`;
  const containers: string[] = [];
  try {
    log(`${CONCURRENT} concurrent tether create (fresh TETHER_HOME, then warm) and docker run -d`);
    const create = [process.execPath, TETHER_CLI, "create", "--label", label, BUSYBOX_IMAGE];
    const fresh = await concurrently(CONCURRENT, create, env);
    const dockerRun = async () => {
      const docker = await concurrently(
        CONCURRENT,
        ["docker", "run", "-d", "--label", label, "--network", "none", BUSYBOX_IMAGE, "sleep", "3600"],
        process.env,
      );
      containers.push(...docker.out);
      return docker.ms;
    };
    // Each pair of rows has its own docker run, taken between its two: a shared machine's load moves in minutes.
    const docker = await dockerRun();
    const warm = await concurrently(CONCURRENT, create, env);
    log(`${CONCURRENT} concurrent Sandboxes.create in this process (fresh TETHER_HOME, then warm)`);
    const libraryFresh = await concurrentlyInProcess(CONCURRENT, library, label);
    const dockerBeside = await dockerRun();
    const libraryWarm = await concurrentlyInProcess(CONCURRENT, library, label);
    const results: ConcurrentCreates = {
      concurrent: CONCURRENT,
      tetherFresh: fresh.ms,
      tetherWarm: warm.ms,
      dockerRun: docker,
      dockerRunBesideLibrary: dockerBeside,
      libraryFresh,
      libraryWarm,
    };
    const row = (metric: string, ms: number, baseline: number): Row => ({
      metric,
      unit: "ms",
      tether: ms,
      baseline,
      baselineName: "docker run -d",
      ratio: ms / baseline,
      target: "<= 1.5x docker",
      met: ms <= 1.5 * baseline,
    });
    return {
      rows: [
        row(`${CONCURRENT} concurrent tether create, fresh home`, fresh.ms, docker),
        row(`${CONCURRENT} concurrent tether create, warm`, warm.ms, docker),
        row(`${CONCURRENT} concurrent Sandboxes.create in one process, fresh home`, libraryFresh, dockerBeside),
        row(`${CONCURRENT} concurrent Sandboxes.create in one process, warm`, libraryWarm, dockerBeside),
      ],
      results,
    };
  } finally {
    await removeHome(new Sandboxes({ home }));
    await removeHome(library);
    if (containers.length > 0) await run("docker", ["rm", "-f", ...containers]).catch(() => {});
  }
}
