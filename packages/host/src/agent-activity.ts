import http from "node:http";
import { ACCESS_TOKEN_HEADER } from "@tether/protocol";

/** What an agent's `GET /activity` answers. */
export interface AgentActivity {
  /** When a request last began or ended, ms since the epoch. */
  lastActivity: number;
  /** Requests it is serving now (streamed commands included). */
  activeRequests: number;
}

/**
 * Asks an agent over its unix socket how busy it is; undefined when it does not answer
 * in time (stopped, frozen, or an agent without the endpoint).
 */
export function agentActivity(
  socketPath: string,
  accessToken: string,
  timeoutMs = 1000,
): Promise<AgentActivity | undefined> {
  return new Promise((resolve) => {
    const req = http.get(
      {
        socketPath,
        path: "/activity",
        agent: false,
        timeout: timeoutMs,
        headers: { [ACCESS_TOKEN_HEADER]: accessToken },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (t: string) => {
          body += t;
        });
        res.on("end", () => {
          if (res.statusCode !== 200) return resolve(undefined);
          try {
            const parsed = JSON.parse(body) as AgentActivity;
            resolve(typeof parsed.lastActivity === "number" ? parsed : undefined);
          } catch {
            resolve(undefined);
          }
        });
      },
    );
    // Only the error handler below sees it, and it answers undefined: no one is told.
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(undefined));
  });
}
