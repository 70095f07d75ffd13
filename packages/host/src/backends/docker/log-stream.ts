import type { LogChunk } from "../backend.js";

const HEADER_SIZE = 8;

/**
 * Splits the Engine API's multiplexed log stream (containers without a TTY) into
 * chunks: each frame is [stream type, 0, 0, 0, size (uint32 BE)] then `size` bytes.
 */
export async function* demuxLogStream(
  source: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
): AsyncGenerator<LogChunk> {
  let pending = Buffer.alloc(0);
  for await (const piece of source) {
    pending = pending.length === 0 ? Buffer.from(piece) : Buffer.concat([pending, Buffer.from(piece)]);
    while (pending.length >= HEADER_SIZE) {
      const size = pending.readUInt32BE(4);
      if (pending.length < HEADER_SIZE + size) break;
      const data = pending.subarray(HEADER_SIZE, HEADER_SIZE + size);
      // 1 stdout, 2 stderr (0 would be stdin, never sent for logs).
      yield { stream: pending[0] === 2 ? "stderr" : "stdout", data: Buffer.from(data) };
      pending = pending.subarray(HEADER_SIZE + size);
    }
  }
}

/** The last `count` lines of some log chunks, stdout and stderr interleaved as logged. */
export function lastLines(chunks: readonly LogChunk[], count: number): string[] {
  const text = Buffer.concat(chunks.map((c) => c.data)).toString("utf8");
  const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
  if (lines.at(-1) === "") lines.pop();
  return lines.slice(-count);
}
