import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * Finds the file that counts OOM kills in the agent's memory cgroup: cgroup v2's
 * `memory.events` (which counts the whole subtree) or v1's `memory.oom_control`.
 * Children stay in the agent's cgroup, so a kill among them shows up there.
 * Undefined when no such file can be read (no memory controller, or not mounted).
 */
export function findOomCounter(procCgroup = "/proc/self/cgroup", root = "/sys/fs/cgroup"): string | undefined {
  const text = readSmallFile(procCgroup) ?? "";
  const candidates: string[] = [];
  for (const line of text.split("\n")) {
    const [, controllers, cgroupPath] = /^\d+:([^:]*):(.*)$/.exec(line.trim()) ?? [];
    if (cgroupPath === undefined) continue;
    if (controllers === "") {
      // v2 (unified). Mounted at the root in a pure v2 system, at unified/ in a hybrid one.
      candidates.push(path.join(root, cgroupPath, "memory.events"));
      candidates.push(path.join(root, "unified", cgroupPath, "memory.events"));
    } else if (controllers.split(",").includes("memory")) {
      candidates.push(path.join(root, "memory", cgroupPath, "memory.oom_control"));
      // In a container without a cgroup namespace the path names the host's view.
      candidates.push(path.join(root, "memory", "memory.oom_control"));
    }
  }
  candidates.push(path.join(root, "memory.events"));
  for (const file of candidates) {
    if (readOomKills(file) !== undefined) return file;
  }
  return undefined;
}

/**
 * The `oom_kill N` counter of a memory.events or memory.oom_control file. Read synchronously:
 * it is a few bytes from a kernel file, done on every exec, and a thread-pool round trip
 * would cost more than the read.
 */
export function readOomKills(file: string): number | undefined {
  const text = readSmallFile(file);
  return text === undefined ? undefined : parseOomKills(text);
}

function readSmallFile(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

export function parseOomKills(text: string): number | undefined {
  const match = /^oom_kill (\d+)$/m.exec(text);
  return match ? Number(match[1]) : undefined;
}

let agentCounter: { file: string | undefined } | undefined;

/** The agent's OOM kill counter now, if it can be seen. */
export function agentOomKills(): number | undefined {
  agentCounter ??= { file: findOomCounter() };
  return agentCounter.file === undefined ? undefined : readOomKills(agentCounter.file);
}
