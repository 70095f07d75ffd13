import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** tetherd's bin, found through the @tether/agent package. */
export const TETHERD = path.resolve(
  path.dirname(fileURLToPath(import.meta.resolve("@tether/agent"))),
  "../../bin/tetherd.js",
);

/** A tetherd running as a child process, so its memory can be measured from outside. */
export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  /** Its TCP URL, when it listens on TCP. */
  url?: string;
  /** The agent's resident set size now, in bytes. */
  rss(): number;
  stop(): Promise<void>;
}

/**
 * Starts tetherd (`argv` after the bin; `prefix` runs it through another command, such as
 * `ip netns exec NS`) and waits for its "tetherd listening" log line.
 */
export async function spawnAgentProcess(
  argv: string[] = ["--port", "0"],
  prefix: string[] = [],
): Promise<AgentProcess> {
  const [command, ...args] = [...prefix, process.execPath, TETHERD, ...argv];
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
  return {
    child,
    pid,
    url,
    rss() {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
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
