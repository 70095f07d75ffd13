import type { Logger } from "../logger.js";

/** Audit lines written per second at most; a flood of failures is summed up, not logged line by line. */
const LINES_PER_SECOND = 20;

/** What is known of a refused request. */
export interface RefusedRequest {
  method?: string;
  path: string;
  /** The peer's address (TCP); undefined on the unix socket. */
  remote?: string;
  /** Whether the request carried a token at all. */
  tokenGiven: boolean;
}

/**
 * Logs every refused authentication as a warning, up to LINES_PER_SECOND of them; past
 * that, one line a second later says how many more were refused, so a client failing in
 * a loop can fill neither the disk nor the log.
 */
export class AuthAudit {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;
  private summary: NodeJS.Timeout | undefined;

  constructor(private readonly log: Logger) {}

  refused(request: RefusedRequest): void {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (++this.inWindow <= LINES_PER_SECOND) {
      this.log.warn(
        { audit: "auth-failed", ...request, reason: request.tokenGiven ? "wrong access token" : "no access token" },
        "authentication failed",
      );
      return;
    }
    this.suppressed++;
    this.summary ??= setTimeout(() => {
      this.summary = undefined;
      const count = this.suppressed;
      this.suppressed = 0;
      this.log.warn({ audit: "auth-failed", count }, `${count} more authentications failed, not logged one by one`);
    }, 1000).unref();
  }
}
