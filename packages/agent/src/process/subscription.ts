import type { RawMessageWriter } from "../rpc/raw-messages.js";
import type { LogCursor, LogItem, Offsets, OutputKind } from "./output-log.js";
import type { ProcessEnd, TrackedProcess } from "./tracked.js";

/** What a client attached to a process receives, whatever wire format it speaks. */
export type ProcessUpdate =
  | { case: "start"; pid: number }
  | LogItem
  | { case: "end"; end: ProcessEnd }
  | { case: "keepalive" };

/** Where output chunks go when the call's codec allows: written as raw messages, not yielded. */
export interface DirectOutput {
  writer: RawMessageWriter;
  /** The message's bytes before the chunk (see output-frames.ts). */
  head(kind: OutputKind, offset: number, length: number): Uint8Array;
}

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

  /**
   * Yields updates as the consumer pulls them, until the end or until `signal` aborts.
   * With `direct`, output chunks are written through it instead of yielded: all that is
   * ready in one batch, waiting only when the response buffers too much.
   */
  async *updates(signal: AbortSignal, direct?: DirectOutput): AsyncGenerator<ProcessUpdate> {
    const onAbort = () => this.close();
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) this.close();
    try {
      await this.proc.spawned;
      if (this.closed) return;
      yield { case: "start", pid: this.proc.pid };
      while (!this.closed) {
        let item = this.proc.log.read(this.cursor);
        if (item?.case === "data" && direct) {
          this.sentSinceTick = true;
          item = this.writeDirect(item, direct);
          if (direct.writer.full) await direct.writer.drained();
          if (!item) continue;
        }
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

  /** Writes data items from the log until one is not data (returned) or the response is full. */
  private writeDirect(first: LogItem & { case: "data" }, { writer, head }: DirectOutput): LogItem | undefined {
    let item: LogItem | undefined = first;
    writer.cork();
    try {
      while (item?.case === "data") {
        if (writer.closed) {
          this.close();
          return undefined;
        }
        writer.write(head(item.kind, item.offset, item.data.byteLength), item.data);
        item = writer.full ? undefined : this.proc.log.read(this.cursor);
      }
    } finally {
      writer.uncork();
    }
    return item;
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
