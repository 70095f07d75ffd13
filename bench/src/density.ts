import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { dockerStatus, Sandboxes } from "@tether/host";
import { BUSYBOX_IMAGE } from "./docker.js";
import type { Row } from "./report.js";

const run = promisify(execFile);
const SANDBOXES = Number(process.env.BENCH_DENSITY_SANDBOXES ?? 10);
/** How long the sandboxes idle before they are measured (their agents' start garbage settles). */
const SETTLE_MS = 5000;
const MiB = 1 << 20;

/** Proportional and unique set sizes of a process, in bytes (/proc/PID/smaps_rollup). */
export interface ProcessMemory {
  rss: number;
  pss: number;
  /** Private_Clean + Private_Dirty: what the process alone holds, freed if it exits. */
  uss: number;
}

export function processMemory(pid: number): ProcessMemory {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb("Rss"), pss: kb("Pss"), uss: kb("Private_Clean") + kb("Private_Dirty") };
}

/**
 * Where a process's private memory is, by mapping (/proc/PID/smaps): anonymous mappings
 * (V8's heap spaces, malloc arenas, thread stacks), [heap] (brk malloc), and each file
 * (the node binary's relocated data, libraries), in bytes, largest first.
 */
export function privateByMapping(pid: number): Record<string, number> {
  const totals = new Map<string, number>();
  let name = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      name = header[1] ? path.basename(header[1]) : "[anon]";
      continue;
    }
    const priv = /^Private_(?:Clean|Dirty):\s+(\d+) kB$/.exec(line);
    if (priv) totals.set(name, (totals.get(name) ?? 0) + Number(priv[1]) * 1024);
  }
  return Object.fromEntries([...totals].filter(([, bytes]) => bytes > 0).sort((a, b) => b[1] - a[1]));
}

/** Every process's parent, from /proc. */
function parents(): Map<number, number> {
  const table = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      table.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  return table;
}

/**
 * What a container costs the host in process memory: the PSS of its containerd shim
 * (one per container, outside the container) and of every process in it. PSS counts
 * shared pages (the node binary, busybox, libc) once over all who map them, so the sum
 * over N containers is what they cost together; kernel memory (page tables, sockets)
 * is not in it.
 */
async function containerPss(ids: string[]): Promise<{ total: number; agents: number[] }> {
  const { stdout } = await run("docker", ["inspect", "--format", "{{.State.Pid}}", ...ids]);
  const inits = stdout.trim().split("\n").map(Number);
  const table = parents();
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of table) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  let total = 0;
  const agents: number[] = [];
  for (const init of inits) {
    const shim = table.get(init) as number;
    const pids = [shim];
    for (let i = 0; i < pids.length; i++) pids.push(...(children.get(pids[i]) ?? []));
    for (const pid of pids) {
      try {
        total += processMemory(pid).pss;
        if (isAgent(pid)) agents.push(pid);
      } catch {
        // Gone meanwhile.
      }
    }
  }
  return { total, agents };
}

/** tetherd itself (docker's init, tini, has tetherd's command line among its arguments). */
function isAgent(pid: number): boolean {
  const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  return comm !== "docker-init" && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("tetherd");
}

export interface DensityResults {
  sandboxes: number;
  /** Host process memory (PSS) per idle Tether sandbox of busybox, shim included. */
  tetherPerSandbox: number;
  /** The same for a bare `docker run -d busybox sleep`. */
  barePerContainer: number;
  /** An idle agent's memory among the others, mean over the sandboxes. */
  agent: ProcessMemory;
  /** One agent's private memory by mapping. */
  agentPrivateByMapping: Record<string, number>;
}

/**
 * N idle Tether sandboxes of busybox beside N bare `sleep` containers of the same image:
 * host memory per sandbox, as the sum of PSS over each container's shim and processes.
 */
export async function measureDensity(
  log: (text: string) => void,
): Promise<{ rows: Row[]; results: DensityResults } | { skipped: string }> {
  const status = await dockerStatus();
  if (!status.available) return { skipped: `docker: ${status.reason}` };
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-density-"));
  const sandboxes = new Sandboxes({ home });
  /** Sandbox ids, and their containers. */
  const tether: { id: string; container: string }[] = [];
  const bare: string[] = [];
  try {
    log(`memory per sandbox: ${SANDBOXES} idle tether sandboxes and ${SANDBOXES} bare sleep containers`);
    for (let i = 0; i < SANDBOXES; i++) {
      const info = await sandboxes.create(BUSYBOX_IMAGE, { labels: { "tether-bench.density": String(process.pid) } });
      tether.push({ id: info.id, container: info.backendId || info.name });
      const { stdout } = await run("docker", [
        "run",
        "-d",
        "--label",
        `tether-bench.density=${process.pid}`,
        "--network",
        "none",
        BUSYBOX_IMAGE,
        "sleep",
        "3600",
      ]);
      bare.push(stdout.trim());
    }
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const measured = await containerPss(tether.map((t) => t.container));
    const agents = measured.agents.map(processMemory);
    const mean = (field: keyof ProcessMemory) => agents.reduce((sum, m) => sum + m[field], 0) / agents.length;
    const results: DensityResults = {
      sandboxes: SANDBOXES,
      tetherPerSandbox: measured.total / SANDBOXES,
      barePerContainer: (await containerPss(bare)).total / SANDBOXES,
      agent: { rss: mean("rss"), pss: mean("pss"), uss: mean("uss") },
      agentPrivateByMapping: privateByMapping(measured.agents[0]),
    };
    const memoryRow = (metric: string, bytes: number, target: number | null): Row => ({
      metric,
      unit: "MiB",
      tether: bytes / MiB,
      baseline: null,
      baselineName: "",
      ratio: null,
      target: target === null ? "" : `<= ${target} MiB`,
      met: target === null ? null : bytes <= target * MiB,
    });
    const rows: Row[] = [
      {
        metric: `host memory per idle sandbox (PSS, ${SANDBOXES} of each)`,
        unit: "MiB",
        tether: results.tetherPerSandbox / MiB,
        baseline: results.barePerContainer / MiB,
        baselineName: "docker sleep",
        ratio: results.tetherPerSandbox / results.barePerContainer,
        target: "<= bare + 10 MiB",
        met: results.tetherPerSandbox <= results.barePerContainer + 10 * MiB,
      },
      // USS: what one agent alone holds (freed when it exits); PSS adds its share of what
      // it shares with the other agents (the bundle's node binary, libraries).
      memoryRow(`agent USS idle (among ${SANDBOXES} sandboxes)`, results.agent.uss, 12),
      memoryRow(`agent PSS idle (among ${SANDBOXES} sandboxes)`, results.agent.pss, null),
      memoryRow(`agent RSS idle (among ${SANDBOXES} sandboxes)`, results.agent.rss, null),
    ];
    return { rows, results };
  } finally {
    for (const { id } of tether) await sandboxes.remove(id).catch(() => {});
    if (bare.length > 0) await run("docker", ["rm", "-f", ...bare]).catch(() => {});
    sandboxes.close();
    rmSync(home, { recursive: true, force: true });
  }
}
