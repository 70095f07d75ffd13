import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { hostTetherdNodeFlags } from "@tether/protocol/constants";
import { TETHERD_BIN } from "./paths.js";

/** A tetherd running as a separate process, so its memory and CPU can be read from outside. */
export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  /** Its TCP URL, when it listens on TCP. */
  url?: string;
  /** Resident set size now, in bytes (VmRSS). */
  rss(): number;
  /**
   * The anonymous part of it (RssAnon): the process's own memory, without the file-backed
   * pages of the node binary and libraries that every agent on a host shares.
   */
  rssAnon(): number;
  /** Peak resident set size since start, in bytes (VmHWM). */
  peakRss(): number;
  /** CPU time used so far (user + system), in seconds. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/**
 * Starts tetherd with the host's node (`argv` after the script; `prefix` runs it through
 * another command, such as `ip netns exec NS`; `tetherd` replaces the host's node and this
 * package's script, e.g. with a bundle's command) and resolves on its "tetherd listening" line.
 */
export async function spawnAgentProcess(
  argv: string[] = ["--port", "0"],
  options: { prefix?: string[]; tetherd?: readonly string[] } = {},
): Promise<AgentProcess> {
  const tetherd = options.tetherd ?? [process.execPath, ...hostTetherdNodeFlags(), TETHERD_BIN];
  const [command, ...args] = [...(options.prefix ?? []), ...tetherd, ...argv];
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
  const url = await new Promise<string | undefined>((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString("utf8");
      for (const line of text.split("\n")) {
        if (!line.includes("tetherd listening")) continue;
        child.stderr?.off("data", onData);
        child.stderr?.resume();
        resolve((JSON.parse(line) as { tcp?: string }).tcp);
        return;
      }
    };
    child.stderr?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`tetherd exited (${code}) before listening: ${text}`)));
  });
  const pid = child.pid as number;
  const status = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(match?.[1] ?? 0) * 1024;
  };
  return {
    child,
    pid,
    url,
    rss: () => status("VmRSS"),
    rssAnon: () => status("RssAnon"),
    peakRss: () => status("VmHWM"),
    cpuSeconds() {
      // After the command name, utime and stime are the 12th and 13th fields, in clock ticks (100/s).
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      return (Number(fields[11]) + Number(fields[12])) / 100;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Samples a number every `everyMs` until stopped; reports the largest seen. */
export function sampleMax(read: () => number, everyMs = 50): { stop(): number } {
  let max = read();
  const timer = setInterval(() => {
    try {
      max = Math.max(max, read());
    } catch {
      // The process is gone; keep the last maximum.
    }
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return max;
    },
  };
}

/** True when the pid is gone or a zombie (dead, not yet reaped by whoever inherited it). */
export function isGoneOrZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/** Polls /proc every 20 ms until the pid is dead (or gives up after `attempts`, returning false). */
export async function waitGone(pid: number, attempts = 250): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    if (isGoneOrZombie(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
