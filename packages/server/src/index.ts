/** @tether/server: `tether serve`, the E2B-compatible control plane and sandbox proxy. */

export { ENVD_VERSION } from "./api/views.js";
export { type ApiKeyInfo, ApiKeys, DEFAULT_TEAM, type NewApiKey } from "./auth/keys.js";
export { type TeamLimitOptions, TeamLimits } from "./auth/limits.js";
export {
  ApiError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  NotImplementedError,
  RateLimitedError,
  TemplateNotFoundError,
  TetherServerError,
  UnauthorizedError,
} from "./errors.js";
export { AGENT_PORT, type ProxyTarget, proxyTarget } from "./proxy/route.js";
export { type RunningServer, type ServerOptions, startServer } from "./server.js";
export { openServerDatabase } from "./store/database.js";
export { type Template, TemplateDefaults, Templates } from "./templates/templates.js";
