import type { LogChunk } from "../backend.js";

const HEADER_SIZE = 8;
/**
 * Tether's one addition to the framing, in the header's second byte (the engine leaves it
 * 0): the payload starts with the time the supervisor recorded it, ms since the epoch as a
 * float64 BE, then the output.
 */
export const TIMED_FRAME = 1;
const TIME_SIZE = 8;

/** A frame (header at `offset`, payload after it) as a chunk; a timed frame's time becomes `at`. */
export function frameChunk(bytes: Buffer, offset: number): LogChunk {
  const size = bytes.readUInt32BE(offset + 4);
  let data = bytes.subarray(offset + HEADER_SIZE, offset + HEADER_SIZE + size);
  // 1 stdout, 2 stderr (0 would be stdin, never sent for logs).
  const stream = bytes[offset] === 2 ? "stderr" : "stdout";
  if (bytes[offset + 1] === TIMED_FRAME && size >= TIME_SIZE) {
    const at = new Date(data.readDoubleBE(0));
    data = data.subarray(TIME_SIZE);
    return { stream, data: Buffer.from(data), at };
  }
  return { stream, data: Buffer.from(data) };
}

/** The header and payload of a frame recorded at `at` (see TIMED_FRAME). */
export function timedFrame(stream: 1 | 2, data: Buffer, at: number): Buffer {
  const header = Buffer.alloc(HEADER_SIZE + TIME_SIZE);
  header[0] = stream;
  header[1] = TIMED_FRAME;
  header.writeUInt32BE(TIME_SIZE + data.length, 4);
  header.writeDoubleBE(at, HEADER_SIZE);
  return Buffer.concat([header, data]);
}

/**
 * Splits the Engine API's multiplexed log stream (containers without a TTY) into
 * chunks: each frame is [stream type, 0, 0, 0, size (uint32 BE)] then `size` bytes.
 * Pieces are joined only once they hold what is needed next (a header, then a whole
 * frame), so the time is linear in the bytes however finely the stream arrives. The
 * output.log of a `local` or `bwrap` sandbox is in the same framing (with TIMED_FRAME).
 */
export async function* demuxLogStream(
  source: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
): AsyncGenerator<LogChunk> {
  let pieces: Buffer[] = [];
  let length = 0;
  let need = HEADER_SIZE;
  for await (const piece of source) {
    const bytes = typeof piece === "string" ? Buffer.from(piece) : piece;
    pieces.push(bytes);
    length += bytes.length;
    if (length < need) continue;
    const pending = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, length);
    let used = 0;
    while (pending.length - used >= HEADER_SIZE) {
      const size = pending.readUInt32BE(used + 4);
      if (pending.length - used < HEADER_SIZE + size) break;
      yield frameChunk(pending, used);
      used += HEADER_SIZE + size;
    }
    const rest = pending.subarray(used);
    pieces = rest.length > 0 ? [rest] : [];
    length = rest.length;
    need = rest.length >= HEADER_SIZE ? HEADER_SIZE + rest.readUInt32BE(4) : HEADER_SIZE;
  }
}

/** The last `count` lines of some log chunks, stdout and stderr interleaved as logged. */
export function lastLines(chunks: readonly LogChunk[], count: number): string[] {
  const text = Buffer.concat(chunks.map((c) => c.data)).toString("utf8");
  const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
  if (lines.at(-1) === "") lines.pop();
  return lines.slice(-count);
}

/**
 * Docker's `timestamps: true` puts the time the engine recorded a line (RFC 3339 with
 * nanoseconds, then a space) before each message; this moves it to `at`.
 */
export function engineTimestamp(chunk: LogChunk): LogChunk {
  const space = chunk.data.indexOf(0x20);
  if (space < 0 || space > 40) return chunk;
  const at = Date.parse(chunk.data.subarray(0, space).toString("latin1"));
  if (Number.isNaN(at)) return chunk;
  return { stream: chunk.stream, data: chunk.data.subarray(space + 1), at: new Date(at) };
}

/** A line of a sandbox's output and when it was recorded (when its first byte was). */
export interface LogLine {
  stream: "stdout" | "stderr";
  /** Without its line break. */
  text: string;
  at?: Date;
}

/**
 * The lines of some log chunks, each stream's split apart (a line cut across chunks, or
 * into the engine's 16 KiB pieces, is joined again); a last line without a break comes
 * out at the end.
 */
export async function* logLines(chunks: AsyncIterable<LogChunk> | Iterable<LogChunk>): AsyncGenerator<LogLine> {
  const open = new Map<"stdout" | "stderr", { parts: Buffer[]; at?: Date }>();
  const line = (stream: "stdout" | "stderr", parts: Buffer[], at: Date | undefined): LogLine => {
    const text = Buffer.concat(parts).toString("utf8").replace(/\r$/, "");
    return at ? { stream, text, at } : { stream, text };
  };
  for await (const chunk of chunks) {
    let start = 0;
    for (let i = chunk.data.indexOf(10); i !== -1; i = chunk.data.indexOf(10, start)) {
      const pending = open.get(chunk.stream);
      open.delete(chunk.stream);
      const piece = chunk.data.subarray(start, i);
      yield line(chunk.stream, pending ? [...pending.parts, piece] : [piece], pending?.at ?? chunk.at);
      start = i + 1;
    }
    if (start < chunk.data.length) {
      const pending = open.get(chunk.stream) ?? { parts: [], at: chunk.at };
      pending.parts.push(chunk.data.subarray(start));
      open.set(chunk.stream, pending);
    }
  }
  for (const [stream, pending] of open) yield line(stream, pending.parts, pending.at);
}
