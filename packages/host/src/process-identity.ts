import { readFileSync } from "node:fs";

/**
 * A process as the kernel knows it: its pid and when it started (this boot's id and the
 * start time in clock ticks), so a pid the kernel reused later is not mistaken for it.
 */
export interface ProcessIdentity {
  pid: number;
  start: string;
}

let bootId: string | undefined;

function currentBootId(): string {
  bootId ??= readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  return bootId;
}

/** The identity of process `pid`, or undefined when there is none (or it is a zombie). */
export function processIdentity(pid: number): ProcessIdentity | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  return { pid, start: `${currentBootId()}:${fields[19]}` };
}

/** This process's identity. */
export function currentProcess(): ProcessIdentity {
  const self = processIdentity(process.pid);
  // An invariant, not a user's error: a running process on Linux always has its own stat.
  if (!self) throw new Error("cannot read /proc/self/stat");
  return self;
}

/** True while the process `id` names still runs (the same one: not a later process with its pid). */
export function isAlive(id: ProcessIdentity): boolean {
  return processIdentity(id.pid)?.start === id.start;
}

/** The process state letter of `pid` (R, S, D, T for stopped, ...), or undefined when gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}
