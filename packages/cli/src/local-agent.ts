import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Agent } from "@tether/sdk";

/** A tetherd started by this process, on a private unix socket, for `tether run`. */
export interface LocalAgent {
  /** A client already connected to it. */
  client: Agent;
  pid: number;
  /** Stops the agent (SIGTERM, then SIGKILL) and removes its directory. */
  stop(): Promise<void>;
}

/** tetherd's bin, found through the @tether/agent package so it works from any cwd. */
function tetherdBin(): string {
  const entry = fileURLToPath(import.meta.resolve("@tether/agent"));
  return path.resolve(path.dirname(entry), "../../bin/tetherd.js");
}

const STDERR_TAIL_BYTES = 16 << 10;

/**
 * Starts tetherd as a child listening only on a unix socket (mode 0600) in a fresh
 * private directory, with a random access token, and waits until it answers /health.
 */
export async function startLocalAgent(timeoutMs = 15_000): Promise<LocalAgent> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-run-"));
  const socket = path.join(dir, "agent.sock");
  const token = randomBytes(24).toString("base64url");
  // The token goes in the environment, not argv, where other users could read it.
  const child = spawn(process.execPath, [tetherdBin(), "--no-tcp", "--socket", socket, "--log-level", "warn"], {
    env: { ...process.env, TETHER_ACCESS_TOKEN: token },
    stdio: ["ignore", "ignore", "pipe"],
    // Its own process group: a Ctrl-C at the terminal reaches us, and we stop it in order.
    detached: true,
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_BYTES);
  });
  const exited = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => resolve(signal ? `killed by ${signal}` : `exited with code ${code}`));
    child.once("error", (err) => resolve(`could not start: ${err.message}`));
  });
  let cleaned = false;
  const cleanupSync = () => {
    if (cleaned) return;
    cleaned = true;
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  // Whatever way this process ends, the agent and its directory must not outlive it.
  process.once("exit", cleanupSync);

  const client = new Agent({ socket, accessToken: token });
  const stop = async () => {
    client.close();
    await stopChild(child, exited);
    cleanupSync();
    process.off("exit", cleanupSync);
  };
  try {
    await waitHealthy(client, exited, timeoutMs);
  } catch (err) {
    await stop();
    const tail = stderr.trim();
    throw new Error(`${err instanceof Error ? err.message : err}${tail ? `\n${tail}` : ""}`);
  }
  return { client, pid: child.pid ?? -1, stop };
}

async function waitHealthy(client: Agent, exited: Promise<string>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let exitReason: string | undefined;
  exited.then((reason) => {
    exitReason = reason;
  });
  while (Date.now() < deadline) {
    if (exitReason) throw new Error(`the local agent ${exitReason} before it was ready`);
    try {
      await client.health();
      return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(
    `the local agent did not answer within ${timeoutMs} ms: ${lastError instanceof Error ? lastError.message : lastError}`,
  );
}

async function stopChild(child: ChildProcess, exited: Promise<string>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
