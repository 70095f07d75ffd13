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

/**
 * Polls health until the agent answers (returns undefined), `stillAlive` says the sandbox
 * died, or `timeoutMs` passes. Polls fast at first: most agents answer within ~100 ms.
 */
export async function waitForAgent(
  socketPath: string,
  stillAlive: () => Promise<{ alive: boolean; detail?: string }>,
  timeoutMs: number,
): Promise<NotReady | undefined> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (let attempt = 0; ; attempt++) {
    if (await agentAnswersHealth(socketPath)) return undefined;
    // Asking the engine costs more than a failed connect: every few polls only.
    if (attempt % 4 === 3) {
      const state = await stillAlive();
      if (!state.alive) {
        // It may have answered just before exiting; a dead sandbox is not ready either way.
        return { reason: "died", detail: state.detail };
      }
    }
    if (Date.now() > deadline) return { reason: "timeout" };
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 100);
  }
}
