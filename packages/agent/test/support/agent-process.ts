import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const TETHERD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../bin/tetherd.js");

/** A tetherd running as a child process, so its memory can be measured from outside. */
export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  url: string;
  /** The agent's resident set size now, in bytes. */
  rss(): number;
  stop(): Promise<void>;
}

/** Starts `tetherd --port 0` and waits for its "tetherd listening" log line. */
export async function spawnAgentProcess(args: string[] = []): Promise<AgentProcess> {
  const child = spawn(process.execPath, [TETHERD, "--port", "0", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const url = await new Promise<string>((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString("utf8");
      for (const line of text.split("\n")) {
        if (!line.includes("tetherd listening")) continue;
        child.stderr?.off("data", onData);
        child.stderr?.resume();
        resolve((JSON.parse(line) as { tcp: string }).tcp);
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
      const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0);
      return kb * 1024;
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
