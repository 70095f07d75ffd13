import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { TemplateDefaults } from "@tether/server";
import { readyLine } from "./child-output.js";

/** A template the server child is started with. */
export interface ChildTemplate {
  name: string;
  image: string;
  defaults?: TemplateDefaults;
}

/** A `tether serve` running in a process of its own, with a key of team "bench". */
export interface ServerProcess {
  url: string;
  key: string;
  /** The server process's resident memory now (MB). */
  rssMB(): number;
  /** SIGTERM, then resolves once it exited (its sandboxes keep running). */
  stop(): Promise<void>;
}

/**
 * Starts tether serve on `home` in a child process, as a user runs it: a server in the
 * bench's own process would share its event loop (and its GC) with the clients measured
 * against it, which no deployment does, and its RSS would be the bench's too.
 */
export async function startServerProcess(home: string, templates: ChildTemplate[]): Promise<ServerProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    [fileURLToPath(new URL("server-child.js", import.meta.url)), home, JSON.stringify(templates)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    const line = await readyLine(child, "the server");
    const { url, key } = JSON.parse(line) as { url: string; key: string };
    return {
      url,
      key,
      rssMB: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1]) / 1024,
      stop: async () => {
        child.kill("SIGTERM");
        await exited;
      },
    };
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
}
