import type { LogChunk } from "../backend.js";

const HEADER_SIZE = 8;

/**
 * Splits the Engine API's multiplexed log stream (containers without a TTY) into
 * chunks: each frame is [stream type, 0, 0, 0, size (uint32 BE)] then `size` bytes.
 * Pieces are joined only once they hold what is needed next (a header, then a whole
 * frame), so the time is linear in the bytes however finely the stream arrives.
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
      const data = pending.subarray(used + HEADER_SIZE, used + HEADER_SIZE + size);
      // 1 stdout, 2 stderr (0 would be stdin, never sent for logs).
      yield { stream: pending[used] === 2 ? "stderr" : "stdout", data: Buffer.from(data) };
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
