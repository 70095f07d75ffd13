import { stat } from "node:fs/promises";
import http from "node:http";

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

/** How often to look for the agent's socket while it starts. */
const POLL_INTERVAL_MS = 10;
/** How often to ask the engine whether the sandbox still lives (dearer than a stat). */
const ALIVE_CHECK_INTERVAL_MS = 200;

/**
 * Polls until the agent answers health (returns undefined), `stillAlive` says the sandbox
 * died, or `timeoutMs` passes. Until the socket file appears only a stat is spent per
 * poll (the host directory is fresh, or its stale socket was removed before a restart).
 */
export async function waitForAgent(
  socketPath: string,
  stillAlive: () => Promise<{ alive: boolean; detail?: string }>,
  timeoutMs: number,
): Promise<NotReady | undefined> {
  const deadline = Date.now() + timeoutMs;
  let nextAliveCheck = Date.now() + ALIVE_CHECK_INTERVAL_MS;
  for (;;) {
    const socket = await stat(socketPath).catch(() => undefined);
    if (socket && (await agentAnswersHealth(socketPath))) return undefined;
    if (Date.now() >= nextAliveCheck) {
      const state = await stillAlive();
      if (!state.alive) return { reason: "died", detail: state.detail };
      nextAliveCheck = Date.now() + ALIVE_CHECK_INTERVAL_MS;
    }
    if (Date.now() > deadline) return { reason: "timeout" };
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
}
