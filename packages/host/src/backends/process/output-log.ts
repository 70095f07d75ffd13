import { open, readFile } from "node:fs/promises";
import type { LogChunk, LogOptions } from "../backend.js";
import { demuxLogStream, frameChunk } from "../docker/log-stream.js";

const FOLLOW_POLL_MS = 100;

/** The last `count` lines of some chunks, each line kept with the stream it came on. */
export function tailChunks(chunks: readonly LogChunk[], count: number): LogChunk[] {
  const pieces: LogChunk[] = [];
  for (const chunk of chunks) {
    let start = 0;
    for (let i = chunk.data.indexOf(10); i !== -1; i = chunk.data.indexOf(10, start)) {
      pieces.push({ stream: chunk.stream, data: chunk.data.subarray(start, i + 1) });
      start = i + 1;
    }
    if (start < chunk.data.length) pieces.push({ stream: chunk.stream, data: chunk.data.subarray(start) });
  }
  return count <= 0 ? [] : pieces.slice(-count);
}

/**
 * A sandbox's output.log as chunks: all of it (or its last `tail` lines), then with
 * `follow` whatever is appended until `running()` turns false or `signal` aborts. Each
 * chunk has the time the supervisor read it (`since` cuts on it); chunks an older
 * supervisor wrote have none, and pass `since`.
 */
export async function* readOutputLog(
  file: string,
  options: LogOptions,
  running: () => Promise<boolean>,
): AsyncGenerator<LogChunk> {
  const initial = await readFile(file).catch(() => Buffer.alloc(0));
  const chunks: LogChunk[] = [];
  const since = options.since?.getTime();
  const wanted = (chunk: LogChunk) => since === undefined || chunk.at === undefined || chunk.at.getTime() >= since;
  for await (const chunk of demuxLogStream([initial])) if (wanted(chunk)) chunks.push(chunk);
  yield* options.tail !== undefined ? tailChunks(chunks, options.tail) : chunks;
  if (!options.follow) return;

  let offset = initial.length;
  let pending = Buffer.alloc(0);
  const signal = options.signal;
  while (!signal?.aborted) {
    const alive = await running();
    const handle = await open(file, "r").catch(() => undefined);
    let fresh = Buffer.alloc(0);
    if (handle) {
      try {
        const { size } = await handle.stat();
        if (size > offset) {
          fresh = Buffer.alloc(size - offset);
          await handle.read(fresh, 0, fresh.length, offset);
          offset = size;
        }
      } finally {
        await handle.close();
      }
    }
    if (fresh.length > 0) {
      const data = Buffer.concat([pending, fresh]);
      let used = 0;
      while (data.length - used >= 8 && data.length - used >= 8 + data.readUInt32BE(used + 4)) {
        const chunk = frameChunk(data, used);
        if (wanted(chunk)) yield chunk;
        used += 8 + data.readUInt32BE(used + 4);
      }
      pending = Buffer.from(data.subarray(used));
      continue;
    }
    // Checked before the read: output written just before the end is still delivered.
    if (!alive) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, FOLLOW_POLL_MS);
      signal?.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }
}
