/** The longest line (one JSON frame) either side may send, newline excluded. */
export const MAX_FRAME_BYTES = 8 << 20;

/** Host entropy a reseed mixes in at most. */
export const MAX_RESEED_BYTES = 512;

/** Frames the agent sends. `exit_code` is omitted when 0. */
export type AgentFrame =
  | { type: "started"; pid: number }
  | { type: "stdout"; data: string }
  | { type: "stderr"; data: string }
  | { type: "exit"; exit_code?: number }
  | { type: "error"; message: string };

/** Frames a client sends. `auth` goes first where the listener wants the token (TCP). */
export type ClientFrame =
  | { type: "auth"; token: string }
  | { type: "exec"; argv: string[]; env?: Record<string, string> }
  | { type: "reseed"; data: string; regen_machine_id?: boolean }
  | { type: "stdin"; data: string }
  | { type: "stdin_close" };

/** A frame the agent cannot accept; the message goes back in an error frame. */
export class FrameError extends Error {
  override name = "FrameError";
}

let schemas: Promise<typeof import("./frame-schemas.js")> | undefined;

/** zod is loaded on the first session, like the /init schema: most agents never see one. */
function loadSchemas() {
  schemas ??= import("./frame-schemas.js");
  return schemas;
}

/** Parses the session's first frame (or the one after auth): exec, reseed or auth. */
export async function parseFirstFrame(
  line: string,
): Promise<Extract<ClientFrame, { type: "exec" | "reseed" | "auth" }>> {
  const { firstFrame, prettify } = await loadSchemas();
  const parsed = firstFrame.safeParse(parseJson(line));
  if (!parsed.success) throw new FrameError(`bad first frame (want exec or reseed): ${prettify(parsed.error)}`);
  return parsed.data;
}

/** Parses a frame after exec: stdin or stdin_close. */
export async function parseInputFrame(line: string): Promise<Extract<ClientFrame, { type: "stdin" | "stdin_close" }>> {
  const { inputFrame, prettify } = await loadSchemas();
  const parsed = inputFrame.safeParse(parseJson(line));
  if (!parsed.success) throw new FrameError(`bad stdin frame: ${prettify(parsed.error)}`);
  return parsed.data;
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch (err) {
    throw new FrameError(`frame is not JSON: ${(err as Error).message}`);
  }
}

/** One frame as a line. */
export function encodeFrame(frame: AgentFrame | ClientFrame): string {
  return `${JSON.stringify(frame)}\n`;
}

/**
 * Splits a byte stream into lines of at most `max` bytes; a longer one is an error (the
 * bytes are not kept, so a peer cannot make us buffer more than that). An unfinished line
 * is copied into one buffer that doubles as needed, so a line sent a byte at a time costs
 * a copy per byte, not a list entry (about 100 bytes) per byte and a rescan.
 */
export class FrameReader {
  private buffer = Buffer.alloc(0);
  private length = 0;

  constructor(private readonly max = MAX_FRAME_BYTES) {}

  /** Adds bytes and returns the complete lines; throws FrameError on an oversize line. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      if (this.length + (nl - start) > this.max) throw this.oversize();
      if (this.length === 0) {
        lines.push(chunk.toString("utf8", start, nl));
      } else {
        this.append(chunk, start, nl);
        lines.push(this.buffer.toString("utf8", 0, this.length));
        this.length = 0;
        // A long line's buffer is not kept for the short ones that follow.
        if (this.buffer.length > 64 << 10) this.buffer = Buffer.alloc(0);
      }
      start = nl + 1;
    }
    if (this.length + (chunk.length - start) > this.max) throw this.oversize();
    this.append(chunk, start, chunk.length);
    return lines;
  }

  /** Bytes of an unfinished line, if any. */
  get pending(): number {
    return this.length;
  }

  private append(chunk: Buffer, from: number, to: number): void {
    const need = this.length + (to - from);
    if (need > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(need, this.buffer.length * 2, 256), this.max));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    chunk.copy(this.buffer, this.length, from, to);
    this.length = need;
  }

  private oversize(): FrameError {
    return new FrameError(`frame longer than ${this.max} bytes`);
  }
}
