import type { ProcessEvent } from "@tether/protocol/process";
import { EventReader } from "./event-reader.js";
import { type ProcessExit, signalFromStatus } from "./status.js";

export type OutputKind = "stdout" | "stderr" | "pty";

/** One piece of a process's output, in the order the agent sent it. */
export interface OutputChunk {
  kind: OutputKind;
  data: Uint8Array;
}

/**
 * Reads one process's event stream (Start or Connect): the start event, output, then
 * exactly one end event. Output goes to `onOutput`, whose promise is awaited, so a
 * slow consumer slows the stream down (HTTP/2 flow control) instead of buffering.
 */
export class ProcessEvents extends EventReader<{ event?: ProcessEvent }> {
  constructor(
    events: AsyncIterable<{ event?: ProcessEvent }>,
    private readonly onOutput: (chunk: OutputChunk) => void | Promise<void>,
    mapError: (err: unknown) => Error,
    knownPid?: number,
  ) {
    super(events, mapError);
    if (knownPid !== undefined) this.resolvePid(knownPid);
  }

  protected async read(events: AsyncIterable<{ event?: ProcessEvent }>): Promise<ProcessExit> {
    return this.untilEnd(events, "end", async ({ event }) => {
      const e = event?.event;
      switch (e?.case) {
        case "start":
          this.resolvePid(e.value.pid);
          return undefined;
        case "data": {
          const output = e.value.output;
          if (output.case !== undefined && output.value.length > 0) {
            await this.onOutput({ kind: output.case, data: output.value });
          }
          return undefined;
        }
        case "end": {
          this.ended = true;
          const status = e.value.status;
          const signal = e.value.exited ? undefined : signalFromStatus(status);
          return {
            exitCode: e.value.exitCode,
            status,
            ...(signal ? { signal } : {}),
            ...(e.value.error ? { error: e.value.error } : {}),
          };
        }
        default:
          return undefined; // keepalive
      }
    });
  }
}

/**
 * Output of one process for async iteration: each iterator gets its own queue, filled
 * from the start when the output is kept, else from the moment it attaches.
 */
export class OutputLog {
  private readonly kept: OutputChunk[] | undefined;
  private readonly readers = new Set<{ queue: OutputChunk[]; wake?: () => void }>();
  private closed = false;

  constructor(keep: boolean) {
    this.kept = keep ? [] : undefined;
  }

  push(chunk: OutputChunk): void {
    this.kept?.push(chunk);
    for (const reader of this.readers) {
      reader.queue.push(chunk);
      reader.wake?.();
    }
  }

  close(): void {
    this.closed = true;
    for (const reader of this.readers) reader.wake?.();
  }

  /** Everything kept so far of one kind, decoded as UTF-8. */
  text(kind: OutputKind): string {
    if (!this.kept) return "";
    return Buffer.concat(this.kept.filter((c) => c.kind === kind).map((c) => c.data)).toString("utf8");
  }

  async *iterate(): AsyncGenerator<OutputChunk> {
    const reader: { queue: OutputChunk[]; wake?: () => void } = { queue: [...(this.kept ?? [])] };
    this.readers.add(reader);
    // Read by index, not shift(): shifting a long queue moves all of it, per chunk.
    let at = 0;
    try {
      for (;;) {
        if (at < reader.queue.length) {
          const chunk = reader.queue[at];
          // Let the read chunk go; the queue starts over once drained.
          reader.queue[at++] = undefined as unknown as OutputChunk;
          yield chunk;
          continue;
        }
        reader.queue.length = 0;
        at = 0;
        if (this.closed) return;
        await new Promise<void>((resolve) => {
          reader.wake = resolve;
        });
        reader.wake = undefined;
      }
    } finally {
      this.readers.delete(reader);
    }
  }
}
