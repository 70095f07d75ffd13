import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ProcessEventSchema } from "@tether/protocol/process";

export type ProcessEventInit = MessageInitShape<typeof ProcessEventSchema>;

/** Queued output above which the process is asked to stop producing until we catch up. */
const HIGH_WATER_BYTES = 1 << 20;
const HIGH_WATER_EVENTS = 4096;
const KEEPALIVE: ProcessEventInit = { event: { case: "keepalive", value: {} } };

/**
 * One client's view of a process: the events it has yet to receive, in order, as an
 * async iterable a streaming handler can yield from. Reports backpressure to its owner
 * and slips in keepalive events while nothing else is sent.
 */
export class EventSubscription {
  private queue: ProcessEventInit[] = [];
  private sizes: number[] = [];
  private bytes = 0;
  private full = false;
  private finished = false;
  private closed = false;
  private wake: (() => void) | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private sentSinceTick = false;

  constructor(
    /** Called with true when this subscriber falls behind, false once it caught up or left. */
    private readonly onPressure: (full: boolean) => void,
    /** Called once when the consumer is gone, whatever the reason. */
    private readonly onClose: (sub: EventSubscription) => void,
    keepaliveMs: number | undefined,
  ) {
    if (keepaliveMs) {
      this.keepaliveTimer = setInterval(() => this.tick(), keepaliveMs);
      this.keepaliveTimer.unref();
    }
  }

  push(event: ProcessEventInit, size = 0): void {
    if (this.closed || this.finished) return;
    this.queue.push(event);
    this.sizes.push(size);
    this.bytes += size;
    if (!this.full && (this.bytes > HIGH_WATER_BYTES || this.queue.length > HIGH_WATER_EVENTS)) {
      this.full = true;
      this.onPressure(true);
    }
    this.wakeUp();
  }

  /** No events follow the ones queued: the iterator ends after delivering them. */
  finish(): void {
    this.finished = true;
    this.stopKeepalive();
    this.wakeUp();
  }

  /** Yields queued events as the consumer pulls them, until finished or `signal` aborts. */
  async *events(signal: AbortSignal): AsyncGenerator<ProcessEventInit> {
    const onAbort = () => this.close();
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) this.close();
    try {
      while (!this.closed) {
        const event = this.queue.shift();
        if (event) {
          this.bytes -= this.sizes.shift() ?? 0;
          if (this.full && this.bytes <= HIGH_WATER_BYTES / 2 && this.queue.length <= HIGH_WATER_EVENTS / 2) {
            this.full = false;
            this.onPressure(false);
          }
          this.sentSinceTick = true;
          yield event;
          continue;
        }
        if (this.finished) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.close();
    }
  }

  /** The consumer went away: drop what is queued and release the process. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopKeepalive();
    this.queue = [];
    this.sizes = [];
    if (this.full) {
      this.full = false;
      this.onPressure(false);
    }
    this.wakeUp();
    this.onClose(this);
  }

  private tick(): void {
    if (!this.sentSinceTick && this.queue.length === 0) this.push(KEEPALIVE);
    this.sentSinceTick = false;
  }

  private stopKeepalive(): void {
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
