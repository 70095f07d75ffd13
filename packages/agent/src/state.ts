/**
 * What `POST /init` (or the command line) sets for the whole agent: default env vars,
 * default user and workdir, and the access token. One instance per agent.
 */
export class AgentState {
  /** Env vars every process gets, under what the request itself sets. */
  envVars: Record<string, string> = {};
  defaultUser: string | undefined;
  defaultWorkdir: string | undefined;
  accessToken: string | undefined;
  /** Last time a client did anything (a request began or ended); hosts use it for idle timeouts. */
  lastActivity = Date.now();
  /** Requests being served now: a streamed command counts until its stream closes. */
  activeRequests = 0;

  constructor(init: { accessToken?: string; defaultUser?: string; defaultWorkdir?: string } = {}) {
    this.accessToken = init.accessToken || undefined;
    this.defaultUser = init.defaultUser;
    this.defaultWorkdir = init.defaultWorkdir;
  }

  /** Counts a request as activity from its start until its response closes. */
  trackRequest(res: { once(event: "close", listener: () => void): unknown }): void {
    this.lastActivity = Date.now();
    this.activeRequests++;
    res.once("close", () => {
      this.activeRequests--;
      this.lastActivity = Date.now();
    });
  }

  /**
   * Runs `run` once no request has been in flight for `idleMs`, or once `latestMs` have
   * passed (a command streamed from the start keeps an agent busy for hours). The timers
   * keep nothing alive.
   */
  whenIdle(idleMs: number, latestMs: number, run: () => void): void {
    const deadline = Date.now() + latestMs;
    const check = () => {
      const idle = this.activeRequests === 0 && Date.now() - this.lastActivity >= idleMs;
      if (idle || Date.now() >= deadline) run();
      else setTimeout(check, idleMs).unref();
    };
    setTimeout(check, idleMs).unref();
  }
}
