import { type FSWatcher, watch } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import path from "node:path";

/**
 * One `GET /health` over the agent's unix socket: true when it answers 204 or 200.
 * node:http, not fetch: while a container starts, Node 20's fetch was seen to leave its
 * promise pending forever, with nothing keeping the event loop alive.
 */
export function agentAnswersHealth(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: "/health", agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 204 || res.statusCode === 200);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(false));
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
