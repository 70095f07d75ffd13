import type { LogCursor, LogItem, Offsets } from "./output-log.js";
import type { ProcessEnd, TrackedProcess } from "./tracked.js";

/** What a client attached to a process receives, whatever wire format it speaks. */
export type ProcessUpdate =
  | { case: "start"; pid: number }
  | LogItem
  | { case: "end"; end: ProcessEnd }
  | { case: "keepalive" };

/**
 * One client's view of a process: `start`, then output read from the process's log from
 * the client's own offsets, then `end`; keepalives while nothing else is sent. Nothing
 * is queued per client: output is read from the log when the client is ready for it.
 */
export class Subscription {
  private readonly cursor: LogCursor;
  private closed = false;
  private wake: (() => void) | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private keepaliveDue = false;
  private sentSinceTick = false;

  constructor(
    private readonly proc: TrackedProcess,
    from: Offsets,
    blocking: boolean,
    keepaliveMs: number | undefined,
  ) {
    this.cursor = { offsets: { ...from }, blocking };
    proc.log.attach(this.cursor);
    if (keepaliveMs) {
      this.keepaliveTimer = setInterval(() => this.tick(), keepaliveMs);
      this.keepaliveTimer.unref();
    }
  }

  /** Something changed (output, spawn, end): wake the reader if it waits. */
  notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Yields updates as the consumer pulls them, until the end or until `signal` aborts. */
  async *updates(signal: AbortSignal): AsyncGenerator<ProcessUpdate> {
    const onAbort = () => this.close();
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) this.close();
    try {
      await this.proc.spawned;
      if (this.closed) return;
      yield { case: "start", pid: this.proc.pid };
      while (!this.closed) {
        const item = this.proc.log.read(this.cursor);
        if (item) {
          this.sentSinceTick = true;
          yield item;
          continue;
        }
        const end = this.proc.end;
        if (end) {
          yield { case: "end", end };
          return;
        }
        if (this.keepaliveDue) {
          this.keepaliveDue = false;
          yield { case: "keepalive" };
          continue;
        }
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.close();
    }
  }

  /** The consumer went away: release the process (and its output, if this client held it back). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepaliveTimer);
    this.proc.log.detach(this.cursor);
    this.proc.unsubscribe(this);
    this.notify();
  }

  private tick(): void {
    if (!this.sentSinceTick) {
      this.keepaliveDue = true;
      this.notify();
    }
    this.sentSinceTick = false;
  }
}
