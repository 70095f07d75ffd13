import type { AgentContext } from "../context.js";
import { type HttpRequest, type HttpResponse, sendJson } from "./respond.js";

/** Where a host asks how busy the agent is (Tether's own endpoint, not envd's). */
export const ACTIVITY_PATH = "/activity";

/** What `GET /activity` answers. */
export interface ActivityReport {
  /** When an authorized request (not /health, not this one) last began or ended, ms since the epoch. */
  lastActivity: number;
  /** Requests being served now (streams included), this one left out. */
  activeRequests: number;
}

/** `GET /activity`: when a client last did something, for hosts' idle timeouts; asking is not activity. */
export function handleActivity(ctx: AgentContext, _req: HttpRequest, res: HttpResponse): void {
  const report: ActivityReport = { lastActivity: ctx.state.lastActivity, activeRequests: ctx.state.activeRequests };
  sendJson(res, 200, report);
}
