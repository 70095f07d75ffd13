import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandboxes } from "@tether/host";
import { Sandbox, Tether } from "@tether/sdk";
import Docker from "dockerode";
import { removeHome } from "./bench-home.js";
import type { Row } from "./report.js";
import { type ServerProcess, startServerProcess } from "./server-process.js";

const BUSYBOX = "tether-test/busybox";
const IN_FLIGHT = 10;
const CREATES = Number(process.env.BENCH_SERVER_CREATES ?? 30);
const IDLE = Number(process.env.BENCH_SERVER_IDLE ?? 50);

export interface ServerScaleResults {
  /** Sandboxes ready per second, IN_FLIGHT at a time: our SDK through tether serve, and the Engine API's create+start+exec. */
  createsPerSecond: number;
  engineCreatesPerSecond: number;
  /** The server process's RSS (MB) with no sandbox, and with IDLE idle ones. */
  rssEmptyMB: number;
  rssIdleMB: number;
}

/** Runs `make` count times, `inFlight` at once; resolves with what each made, and the seconds it took. */
async function pool<T>(
  count: number,
  inFlight: number,
  make: () => Promise<T>,
): Promise<{ made: T[]; seconds: number }> {
  const made: T[] = [];
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        next++;
        made.push(await make());
      }
    }),
  );
  return { made, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

/**
 * tether serve at scale: sandboxes created per second with 10 in flight through our SDK
 * beside the Engine API doing create+start+exec at 10 in flight (same image, same run),
 * and the server process's RSS with 50 idle sandboxes beside its RSS with none.
 */
export async function measureServerScale(
  log: (text: string) => void,
): Promise<{ rows: Row[]; results: ServerScaleResults } | { skipped: string }> {
  const docker = new Docker();
  try {
    await docker.ping();
    await docker.getImage(BUSYBOX).inspect();
  } catch (err) {
    return { skipped: `Docker or ${BUSYBOX} not usable: ${(err as Error).message.split("\n")[0]}` };
  }
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-scale-"));
  const made: Sandbox[] = [];
  let server: ServerProcess | undefined;
  try {
    server = await startServerProcess(home, [{ name: "bench", image: BUSYBOX }]);
    const { url, key } = server;
    const tether = new Tether({ apiUrl: url, apiKey: key });
    await new Promise((r) => setTimeout(r, 1000));
    const rssEmptyMB = server.rssMB();

    const create = async () => {
      const sandbox = await Sandbox.create({ tether, template: "bench" });
      made.push(sandbox);
      return sandbox;
    };
    const engine = async () => {
      const container = await docker.createContainer({
        Image: BUSYBOX,
        Cmd: ["sleep", "3600"],
        HostConfig: { NetworkMode: "none", Init: true },
      });
      await container.start();
      const exec = await container.exec({ Cmd: ["true"], AttachStdout: true, AttachStderr: true });
      const stream = await exec.start({ hijack: true, stdin: false });
      await new Promise<void>((resolve, reject) => {
        stream.on("end", resolve).on("close", resolve).on("error", reject);
        stream.resume();
      });
      return container;
    };
    log(
      `sandboxes created through tether serve (our SDK) and by the Engine API: ${CREATES} each, ${IN_FLIGHT} in flight`,
    );
    await create();
    const ours = await pool(CREATES, IN_FLIGHT, create);
    const theirs = await pool(CREATES, IN_FLIGHT, engine);
    await Promise.all(theirs.made.map((c) => c.remove({ force: true }).catch(() => {})));
    log(`server RSS with ${IDLE} idle sandboxes`);
    while (made.length < IDLE) await pool(Math.min(IN_FLIGHT, IDLE - made.length), IN_FLIGHT, create);
    // Idle: no call in flight; the clients' connections closed, as an idle user's would be.
    for (const sandbox of made) sandbox.close();
    await new Promise((r) => setTimeout(r, 3000));
    const rssIdleMB = server.rssMB();

    const results: ServerScaleResults = {
      createsPerSecond: CREATES / ours.seconds,
      engineCreatesPerSecond: CREATES / theirs.seconds,
      rssEmptyMB,
      rssIdleMB,
    };
    const createRatio = results.createsPerSecond / results.engineCreatesPerSecond;
    const rows: Row[] = [
      {
        metric: `sandboxes created/s via server, ${IN_FLIGHT} in flight`,
        unit: "/s",
        tether: results.createsPerSecond,
        baseline: results.engineCreatesPerSecond,
        baselineName: "engine create+start+exec",
        ratio: createRatio,
        target: ">= 0.7x",
        met: createRatio >= 0.7,
      },
      {
        metric: `server RSS with ${IDLE} idle sandboxes`,
        unit: "MB",
        tether: rssIdleMB,
        baseline: rssEmptyMB,
        baselineName: "server with none",
        ratio: rssIdleMB / rssEmptyMB,
        target: "<= +1 MB each",
        met: rssIdleMB - rssEmptyMB <= IDLE,
      },
    ];
    return { rows, results };
  } finally {
    await Promise.all(made.map((s) => s.kill().catch(() => {})));
    await server?.stop();
    await removeHome(new Sandboxes({ home }));
  }
}
