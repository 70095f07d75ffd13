import { create } from "@bufbuild/protobuf";
import { type ExecEvent, ExecEventSchema, ExitReason, OutputStream } from "@tether/protocol/exec";
import { EventReader } from "./event-reader.js";
import type { OutputChunk, OutputKind } from "./events.js";
import type { ExitReasonName, ProcessExit } from "./status.js";

/** Byte offsets per output stream. */
export interface StreamOffsets {
  stdout: number;
  stderr: number;
  pty: number;
}

/** Bytes of a stream the agent no longer had when a client asked for them. */
export interface DroppedOutput {
  kind: OutputKind;
  /** First offset asked for. */
  from: number;
  /** First offset the agent still had: output resumed here. */
  to: number;
}

const KINDS: Record<number, OutputKind> = {
  [OutputStream.STDOUT]: "stdout",
  [OutputStream.STDERR]: "stderr",
  [OutputStream.PTY]: "pty",
};

const REASONS: Record<number, ExitReasonName> = {
  [ExitReason.EXITED]: "exited",
  [ExitReason.SIGNALED]: "signaled",
  [ExitReason.TIMEOUT]: "timeout",
  [ExitReason.IDLE_TIMEOUT]: "idle_timeout",
  [ExitReason.OOM_KILLED]: "oom_killed",
};

/**
 * Reads one tether.v1.Exec event stream (Start or Attach): started, output with offsets,
 * then exactly one exit. Output goes to `onOutput`, whose promise is awaited, so a slow
 * consumer slows the stream down instead of buffering. Tracks the next offset of each
 * stream, so a client can re-attach exactly where it left off.
 */
export class ExecEvents extends EventReader<ExecEvent> {
  /** Set once started: whether the process existed before this call (a reused key, an attach). */
  existing = false;
  /** The next byte offset of each stream: everything before it was received (or dropped). */
  readonly offsets: StreamOffsets = { stdout: 0, stderr: 0, pty: 0 };
  readonly dropped: DroppedOutput[] = [];

  constructor(
    events: AsyncIterable<ExecEvent>,
    private readonly onOutput: (chunk: OutputChunk) => void | Promise<void>,
    mapError: (err: unknown) => Error,
    from?: Partial<StreamOffsets>,
  ) {
    super(events, mapError);
    Object.assign(this.offsets, from);
  }

  protected async read(events: AsyncIterable<ExecEvent>): Promise<ProcessExit> {
    return this.untilEnd(events, "exit", async ({ event }) => {
      switch (event.case) {
        case "started":
          this.existing = event.value.existing;
          this.resolvePid(event.value.pid);
          return undefined;
        case "output": {
          const kind = KINDS[event.value.stream];
          if (!kind || event.value.data.length === 0) return undefined;
          this.offsets[kind] = Number(event.value.offset) + event.value.data.length;
          await this.onOutput({ kind, data: event.value.data });
          return undefined;
        }
        case "dropped": {
          const kind = KINDS[event.value.stream];
          if (!kind) return undefined;
          const to = Number(event.value.to);
          this.dropped.push({ kind, from: Number(event.value.from), to });
          this.offsets[kind] = to;
          return undefined;
        }
        case "exit": {
          this.ended = true;
          const e = event.value;
          return {
            exitCode: e.exitCode,
            status: e.status,
            reason: REASONS[e.reason] ?? "exited",
            ...(e.message ? { detail: e.message } : {}),
            ...(e.signal ? { signal: e.signal } : {}),
            ...(e.status.startsWith("exit status ") && e.exitCode !== 0 ? { error: e.status } : {}),
            ...(e.signal ? { error: e.status } : {}),
          };
        }
        default:
          return undefined; // keepalive
      }
    });
  }
}

/**
 * Decodes an ExecEvent output message that arrived in several received buffers as one
 * output event per buffer (offsets advancing), so its data is never copied together. The
 * agent's output messages are laid out as protobuf-es writes them: output (field 2), then
 * stream (1), offset (2, absent when 0) and data (3) last. Anything else, or a head not in
 * the first buffer, is left to the generic decoder (undefined).
 */
export function splitExecOutput(parts: Buffer[]): ExecEvent[] | undefined {
  const first = parts[0];
  let total = 0;
  for (const part of parts) total += part.length;
  if (first[0] !== 0x12) return undefined;
  const outer = readVarint(first, 1);
  if (!outer || outer.end + outer.value !== total) return undefined;
  let at = outer.end;
  let stream = 0;
  let offset = 0;
  if (first[at] === 0x08) {
    const v = readVarint(first, at + 1);
    if (!v) return undefined;
    stream = v.value;
    at = v.end;
  }
  if (first[at] === 0x10) {
    const v = readVarint(first, at + 1);
    if (!v) return undefined;
    offset = v.value;
    at = v.end;
  }
  if (at >= first.length || first[at] !== 0x1a) return undefined;
  const data = readVarint(first, at + 1);
  if (!data || data.end + data.value !== total) return undefined;
  const events: ExecEvent[] = [];
  let skip = data.end;
  for (const part of parts) {
    const piece = skip > 0 ? part.subarray(Math.min(skip, part.length)) : part;
    skip = Math.max(0, skip - part.length);
    if (piece.length === 0) continue;
    events.push(
      create(ExecEventSchema, { event: { case: "output", value: { stream, offset: BigInt(offset), data: piece } } }),
    );
    offset += piece.length;
  }
  return events;
}

/** An unsigned varint at `at` (up to 2^53), or undefined if it does not end within `buf`. */
function readVarint(buf: Buffer, at: number): { value: number; end: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = at; i < buf.length && i < at + 8; i++) {
    const byte = buf[i];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return { value, end: i + 1 };
    scale *= 0x80;
  }
  return undefined;
}
