/** Why the agent itself ended a process. */
export type DeadlineReason = "timeout" | "idle_timeout";

export interface DeadlineOptions {
  /** Run time allowed, in ms; unset: no limit. */
  timeoutMs?: number;
  /** Time allowed without output, in ms; unset: no limit. */
  idleTimeoutMs?: number;
}

/**
 * A process's run-time and output-idle limits. They live with the process, not with any
 * client call: a client that disconnects leaves them running. While the agent holds the
 * process's output back (a slow reader), the idle clock stops: silence we imposed is not
 * the process's.
 */
export class Deadlines {
  private runTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastOutput = 0;
  private paused = false;
  private stopped = false;

  constructor(
    private readonly options: DeadlineOptions,
    private readonly onExpire: (reason: DeadlineReason) => void,
  ) {}

  start(): void {
    if (this.options.timeoutMs) {
      this.runTimer = setTimeout(() => this.expire("timeout"), this.options.timeoutMs);
      this.runTimer.unref();
    }
    this.lastOutput = Date.now();
    this.armIdle(this.options.idleTimeoutMs);
  }

  /** The process printed something. Cheap: the idle timer re-arms itself lazily. */
  output(): void {
    this.lastOutput = Date.now();
  }

  pause(): void {
    this.paused = true;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  resume(): void {
    this.paused = false;
    this.lastOutput = Date.now();
    this.armIdle(this.options.idleTimeoutMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.runTimer);
    clearTimeout(this.idleTimer);
  }

  private armIdle(ms: number | undefined): void {
    if (!ms || this.stopped || this.paused) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      const limit = this.options.idleTimeoutMs as number;
      const quiet = Date.now() - this.lastOutput;
      if (quiet >= limit) this.expire("idle_timeout");
      else this.armIdle(limit - quiet);
    }, ms);
    this.idleTimer.unref();
  }

  private expire(reason: DeadlineReason): void {
    if (this.stopped) return;
    this.stop();
    this.onExpire(reason);
  }
}
