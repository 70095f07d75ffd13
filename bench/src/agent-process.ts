import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** tetherd as a separate process, so its memory is its own and readable from /proc. */
export interface AgentProcess {
  pid: number;
  url: string;
  socket: string;
  /** Resident set size now, in bytes (VmRSS). */
  rss(): number;
  /** Peak resident set size since start, in bytes (VmHWM). */
  peakRss(): number;
  /** CPU time used so far (user + system), in seconds. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

function tetherdBin(): string {
  const entry = fileURLToPath(import.meta.resolve("@tether/agent"));
  return path.resolve(path.dirname(entry), "../../bin/tetherd.js");
}

/** Starts `tetherd --port 0 --socket PATH` and learns its TCP address from its start log line. */
export async function startAgentProcess(socket: string): Promise<AgentProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    [tetherdBin(), "--port", "0", "--socket", socket, "--log-level", "info"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
  const url = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`tetherd exited with ${code} before listening`)));
    lines.on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; tcp?: string };
        if (entry.msg === "tetherd listening" && entry.tcp) resolve(entry.tcp);
      } catch {
        // not a log line
      }
    });
  });
  const pid = child.pid as number;
  const status = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : Number.NaN;
  };
  return {
    pid,
    url,
    socket,
    rss: () => status("VmRSS"),
    peakRss: () => status("VmHWM"),
    cpuSeconds() {
      // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100/s).
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      return (Number(fields[11]) + Number(fields[12])) / 100;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    },
  };
}
