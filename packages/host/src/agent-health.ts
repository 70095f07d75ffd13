import { type FSWatcher, watch } from "node:fs";
import { stat } from "node:fs/promises";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";

/**
 * One `GET /health` over the agent's unix socket: true when it answers 204 or 200.
 * HTTP/2 (prior knowledge), as the SDK speaks to the agent: a fresh agent then compiles one
 * protocol path for the host's wait and the client that follows it, not HTTP/1.1's as well.
 */
export function agentAnswersHealth(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socketPath) });
    const timer = setTimeout(() => done(false), timeoutMs);
    function done(answered: boolean) {
      clearTimeout(timer);
      session.destroy();
      resolve(answered);
    }
    session.on("error", () => done(false));
    const request = session.request({ ":path": "/health" });
    request.on("response", (headers) => {
      const status = headers[":status"];
      done(status === 204 || status === 200);
    });
    request.on("error", () => done(false));
    request.end();
  });
}

/** Why waiting for an agent stopped without it answering. */
export type NotReady = { reason: "died"; detail?: string } | { reason: "timeout" };

/**
 * The longest wait between two looks for the agent while it starts. Changes in the socket's
 * directory (the socket appearing, its chmod/chown once listening) wake the wait at once,
 * so this only bounds waits where no such event is seen (a connect refused between the
 * agent's bind and listen, a filesystem without inotify).
 */
const POLL_INTERVAL_MS = 10;
/** How often to ask the engine whether the sandbox still lives (dearer than a stat). */
const ALIVE_CHECK_INTERVAL_MS = 200;

/**
 * Polls until the agent answers health (returns undefined), `stillAlive` says the sandbox
 * died, or `timeoutMs` passes. Until the socket file appears only a stat is spent per
 * poll (the host directory is fresh, or its stale socket was removed before a restart).
 * A watch on the socket's directory ends each wait early when something there changes.
 */
export async function waitForAgent(
  socketPath: string,
  stillAlive: () => Promise<{ alive: boolean; detail?: string }>,
  timeoutMs: number,
): Promise<NotReady | undefined> {
  const deadline = Date.now() + timeoutMs;
  let nextAliveCheck = Date.now() + ALIVE_CHECK_INTERVAL_MS;
  let changed = false;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(path.dirname(socketPath), { persistent: false }, (_event, name) => {
      if (name !== null && name !== path.basename(socketPath)) return;
      changed = true;
      wake?.();
    });
    // A watch that fails later (the directory removed) only loses the early wake-ups.
    watcher.on("error", () => {});
  } catch {
    // No watch (no inotify, or the directory is missing): plain polling.
  }
  try {
    for (;;) {
      changed = false;
      const socket = await stat(socketPath).catch(() => undefined);
      if (socket && (await agentAnswersHealth(socketPath))) return undefined;
      if (Date.now() >= nextAliveCheck) {
        const state = await stillAlive();
        if (!state.alive) return { reason: "died", detail: state.detail };
        nextAliveCheck = Date.now() + ALIVE_CHECK_INTERVAL_MS;
      }
      if (Date.now() > deadline) return { reason: "timeout" };
      // Something changed while we looked: look again at once.
      if (changed) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, POLL_INTERVAL_MS);
        wake = done;
        function done() {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
      });
    }
  } finally {
    watcher?.close();
  }
}
