import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { dockerStatus, Sandboxes, VmBackend, vmStatus } from "@tether/host";
import { removeHome } from "./bench-home.js";
import { BUSYBOX_IMAGE } from "./docker.js";
import type { Row } from "./report.js";
import { summarize, type Timing } from "./stats.js";

const run = promisify(execFile);
const MiB = 1 << 20;
/** A VM of this much memory: the figure, and what the snapshot's size is for. */
const MEMORY = "256m";
const DOCKER_RUNS = Number(process.env.BENCH_VM_DOCKER_RUNS ?? 5);
/** Every row is a TCG figure: this machine has no usable KVM (see the README's vm section). */
const TCG = "TCG, no KVM";

export interface VmResults {
  accelerator: string;
  /** Create to `true` run by the agent, the image's disk made first (docker export, mke2fs). */
  coldBootMs: number;
  /** The same with every disk cached: QEMU, the guest kernel, the init, node and tetherd. */
  bootMs: number;
  /** QMP migrate to the snapshot file, QEMU ended. */
  pauseMs: number;
  snapshotBytes: number;
  /** QEMU with -incoming to `true` run by the agent, clock set and entropy mixed. */
  resumeMs: number;
  /** A snapshot of the paused VM, then one fork restored from it, to `true` run in the fork. */
  forkMs: number;
  /** Docker's create-to-first-exec through tether in the same run, the baseline. */
  docker: Timing | null;
}

/**
 * The vm backend's costs for a 256 MiB busybox VM: boot to first exec (cold: the image's
 * disk made; warm: cached), pause (the memory written) and its snapshot's size, resume,
 * and a fork from the snapshot, beside Docker's create-to-first-exec in the same run.
 */
export async function measureVm(
  log: (text: string) => void,
): Promise<{ rows: Row[]; results: VmResults } | { skipped: string }> {
  const [vm, docker] = await Promise.all([vmStatus(), dockerStatus()]);
  if (!vm.available) return { skipped: vm.reason ?? "the vm backend is not available" };
  if (!docker.available) return { skipped: `the vm backend exports images through Docker: ${docker.reason}` };
  const hasImage = await run("docker", ["image", "inspect", BUSYBOX_IMAGE]).then(
    () => true,
    () => false,
  );
  if (!hasImage) return { skipped: `image ${BUSYBOX_IMAGE} is missing` };
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-vm-"));
  const backend = new VmBackend({ home });
  const sandboxes = new Sandboxes({ home, maintainOnStart: false });
  const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
  const firstExec = async (image: string, backendKind: "vm" | "docker") => {
    const start = process.hrtime.bigint();
    const info = await sandboxes.create(image, { backend: backendKind, memory: MEMORY });
    const agent = await sandboxes.connect(info.id);
    await agent.commands.run(["true"]);
    agent.close();
    return { id: info.id, ms: ms(start) };
  };
  try {
    log("vm: docker create to first exec, the baseline");
    await firstExec(BUSYBOX_IMAGE, "docker").then((r) => sandboxes.remove(r.id));
    const dockerSamples: number[] = [];
    for (let i = 0; i < DOCKER_RUNS; i++) {
      const r = await firstExec(BUSYBOX_IMAGE, "docker");
      dockerSamples.push(r.ms);
      await sandboxes.remove(r.id);
    }
    const dockerTiming = summarize(dockerSamples);

    log(`vm: boot to first exec, cold (the image's disk made), ${MEMORY}`);
    const cold = await firstExec(BUSYBOX_IMAGE, "vm");
    await sandboxes.remove(cold.id);
    log("vm: boot to first exec, disks cached");
    const warm = await firstExec(BUSYBOX_IMAGE, "vm");
    const agent = await sandboxes.connect(warm.id);
    await agent.commands.run(["sh", "-c", "sleep 100000 >/dev/null 2>&1 &"]);
    agent.close();

    log("vm: pause (memory to disk)");
    let start = process.hrtime.bigint();
    await sandboxes.pause(warm.id);
    const pauseMs = ms(start);
    const record = await backend.pauseRecord(warm.id);
    const snapshotBytes = record?.snapshotBytes ?? 0;

    log("vm: snapshot and one fork restored from it");
    start = process.hrtime.bigint();
    const tag = "tether-bench/vm-fork:latest";
    await sandboxes.snapshot(warm.id, tag);
    const fork = await firstExec(tag, "vm");
    const forkMs = ms(start);
    await sandboxes.remove(fork.id);

    log("vm: resume to first exec");
    start = process.hrtime.bigint();
    await sandboxes.unpause(warm.id);
    const resumed = await sandboxes.connect(warm.id);
    await resumed.commands.run(["true"]);
    resumed.close();
    const resumeMs = ms(start);
    await sandboxes.remove(warm.id);
    await backend.removeSnapshot(tag);

    const accelerator = (await backend.boot()).accel;
    const results: VmResults = {
      accelerator,
      coldBootMs: cold.ms,
      bootMs: warm.ms,
      pauseMs,
      snapshotBytes,
      resumeMs,
      forkMs,
      docker: dockerTiming,
    };
    const note = accelerator === "tcg" ? TCG : `accelerator ${accelerator}`;
    const vsDocker = (metric: string, value: number): Row => ({
      metric,
      unit: "ms",
      tether: value,
      baseline: dockerTiming.p50,
      baselineName: "docker create",
      ratio: value / dockerTiming.p50,
      target: "",
      met: null,
      note,
    });
    const plain = (metric: string, value: number, unit = "ms"): Row => ({
      metric,
      unit,
      tether: value,
      baseline: null,
      baselineName: "",
      ratio: null,
      target: "",
      met: null,
      note,
    });
    const rows: Row[] = [
      vsDocker(`vm boot to first exec, cold disk (${MEMORY}, ${note})`, cold.ms),
      vsDocker(`vm boot to first exec (${MEMORY}, ${note})`, warm.ms),
      plain(`vm pause, memory to disk (${MEMORY}, ${note})`, pauseMs),
      plain(`vm snapshot size (${MEMORY})`, snapshotBytes / MiB, "MiB"),
      vsDocker(`vm resume to first exec (${MEMORY}, ${note})`, resumeMs),
      vsDocker(`vm snapshot + fork to first exec (${MEMORY}, ${note})`, forkMs),
    ];
    return { rows, results };
  } finally {
    await removeHome(sandboxes);
  }
}
