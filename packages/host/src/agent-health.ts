import { existsSync, type FSWatcher, watch } from "node:fs";
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
 * agent's bind and listen, a filesystem without inotify, a VM's socket that QEMU made long
 * before the agent in the guest answers).
 */
const POLL_INTERVAL_MS = 10;
/**
 * The same while the socket does not exist yet and a watch will say when it does: ten
 * creates at once had each wait look 100 times a second for the second or two their
 * containers took to start, on the CPU those were starting on.
 */
const WATCHED_ABSENT_POLL_INTERVAL_MS = 50;
/** How often to ask the engine whether the sandbox still lives (dearer than a look at the socket). */
const ALIVE_CHECK_INTERVAL_MS = 200;

/**
 * Polls until the agent answers health (returns undefined), `stillAlive` says the sandbox
 * died, or `timeoutMs` passes. Until the socket file appears only an existence check is spent per
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
      // existsSync, not a stat that throws: an ENOENT's error and stack cost 120 us a look.
      const present = existsSync(socketPath);
      if (present && (await agentAnswersHealth(socketPath))) return undefined;
      if (Date.now() >= nextAliveCheck) {
        const state = await stillAlive();
        if (!state.alive) return { reason: "died", detail: state.detail };
        nextAliveCheck = Date.now() + ALIVE_CHECK_INTERVAL_MS;
      }
      if (Date.now() > deadline) return { reason: "timeout" };
      // Something changed while we looked: look again at once.
      if (changed) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, present || !watcher ? POLL_INTERVAL_MS : WATCHED_ABSENT_POLL_INTERVAL_MS);
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
