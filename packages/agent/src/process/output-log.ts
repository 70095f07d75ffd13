export type OutputKind = "stdout" | "stderr" | "pty";

export const OUTPUT_KINDS: readonly OutputKind[] = ["stdout", "stderr", "pty"];

/** Byte offsets per stream: how many bytes each stream carried before a point. */
export type Offsets = Record<OutputKind, number>;

export const ZERO_OFFSETS: Readonly<Offsets> = { stdout: 0, stderr: 0, pty: 0 };

/** Bytes kept per stream when a start asks for nothing else. */
export const DEFAULT_LOG_LIMIT = 1 << 20;
/** The most a start may ask to keep per stream. */
export const MAX_LOG_LIMIT = 64 << 20;

/** Small chunks are copied into buffers of up to this size, so tiny writes cost few objects. */
const COALESCE_MAX = 16 << 10;
const MIN_COALESCE_CAPACITY = 256;
/** Bookkeeping cost of one chunk, counted against the limit with its bytes. */
const CHUNK_OVERHEAD = 96;

/** What a reader gets next from the log. */
export type LogItem =
  | { case: "data"; kind: OutputKind; offset: number; data: Uint8Array }
  | { case: "dropped"; kind: OutputKind; from: number; to: number };

/** One reader's position in the log. */
export interface LogCursor {
  readonly offsets: Offsets;
  /** A blocking reader's unread output is never evicted; the log asks the producer to pause instead. */
  readonly blocking: boolean;
}

interface Chunk {
  /** Arrival order across all streams. */
  seq: number;
  /** Stream offset of buf[0]. */
  offset: number;
  buf: Buffer;
  length: number;
  /** True when buf is ours to append to (a coalescing buffer). */
  owned: boolean;
}

/** One stream's retained chunks, oldest first. */
class StreamLog {
  constructor(readonly kind: OutputKind) {}

  chunks: Chunk[] = [];
  head = 0;
  /** First offset still retained. */
  start = 0;
  /** Total bytes written. */
  end = 0;
  /** Bytes the retained chunks cost (capacity plus bookkeeping). */
  retained = 0;

  get size(): number {
    return this.chunks.length - this.head;
  }

  first(): Chunk | undefined {
    return this.chunks[this.head];
  }

  last(): Chunk | undefined {
    return this.size > 0 ? this.chunks[this.chunks.length - 1] : undefined;
  }

  shift(): void {
    const chunk = this.chunks[this.head];
    this.chunks[this.head] = undefined as unknown as Chunk;
    this.head++;
    this.retained -= cost(chunk);
    const next = this.chunks[this.head];
    this.start = next ? next.offset : this.end;
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** Index (into chunks) of the retained chunk holding `offset`, which must lie in [start, end). */
  indexOf(offset: number): number {
    let lo = this.head;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.chunks[mid].offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function cost(chunk: Chunk): number {
  return (chunk.owned ? chunk.buf.length : chunk.length) + CHUNK_OVERHEAD;
}

/**
 * A process's output, kept for replay: per stream, a bounded ring of the latest bytes
 * with their byte offsets. Readers pull from it at their own pace through cursors, so a
 * slow reader costs no memory beyond the log. A blocking reader's unread bytes are never
 * dropped: when they exceed the limit the log asks its producer to pause, and to resume
 * once they fell to half of it. Everyone else (lossy or absent readers) only ever sees
 * the latest `limit` bytes, and is told when bytes it wanted were dropped.
 */
export class OutputLog {
  private readonly streams: Record<OutputKind, StreamLog> = {
    stdout: new StreamLog("stdout"),
    stderr: new StreamLog("stderr"),
    pty: new StreamLog("pty"),
  };
  private readonly cursors = new Set<LogCursor>();
  private seq = 0;
  private lastKind: OutputKind | undefined;
  private paused = false;

  constructor(
    /** Bytes kept per stream. */
    readonly limit: number,
    /** Called with true when blocking readers fell a limit behind, false once they caught up. */
    private readonly onPressure: (pause: boolean) => void = () => {},
  ) {}

  /** Total bytes written per stream. */
  get offsets(): Offsets {
    return { stdout: this.streams.stdout.end, stderr: this.streams.stderr.end, pty: this.streams.pty.end };
  }

  /** The first offsets still in the log. */
  get firstAvailable(): Offsets {
    return { stdout: this.streams.stdout.start, stderr: this.streams.stderr.start, pty: this.streams.pty.start };
  }

  /** Bytes the log holds now, bookkeeping included. */
  get retainedBytes(): number {
    return this.streams.stdout.retained + this.streams.stderr.retained + this.streams.pty.retained;
  }

  append(kind: OutputKind, data: Uint8Array): void {
    if (data.byteLength === 0) return;
    const stream = this.streams[kind];
    const last = stream.last();
    if (data.byteLength < COALESCE_MAX && this.lastKind === kind && last?.owned && last.length < COALESCE_MAX) {
      this.appendTo(stream, last, data);
    } else if (data.byteLength < COALESCE_MAX) {
      const capacity = Math.min(COALESCE_MAX, Math.max(MIN_COALESCE_CAPACITY, nextPowerOfTwo(data.byteLength)));
      const buf = Buffer.allocUnsafeSlow(capacity);
      buf.set(data);
      this.push(stream, { seq: this.seq++, offset: stream.end, buf, length: data.byteLength, owned: true });
    } else {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      this.push(stream, { seq: this.seq++, offset: stream.end, buf, length: data.byteLength, owned: false });
    }
    this.lastKind = kind;
    stream.end += data.byteLength;
    this.evict(stream);
    this.updatePressure();
  }

  /** Registers a reader; it must be released with `detach`. */
  attach(cursor: LogCursor): void {
    this.cursors.add(cursor);
  }

  detach(cursor: LogCursor): void {
    if (!this.cursors.delete(cursor)) return;
    if (cursor.blocking) this.afterRead();
  }

  /**
   * The next item for a cursor, in arrival order across streams, advancing it; undefined
   * when it has read everything written so far.
   */
  read(cursor: LogCursor): LogItem | undefined {
    let best: { kind: OutputKind; chunk: Chunk } | undefined;
    for (const kind of OUTPUT_KINDS) {
      const stream = this.streams[kind];
      const at = cursor.offsets[kind];
      if (at >= stream.end) continue;
      if (at < stream.start) {
        cursor.offsets[kind] = stream.start;
        return { case: "dropped", kind, from: at, to: stream.start };
      }
      const chunk = stream.chunks[stream.indexOf(at)];
      if (!best || chunk.seq < best.chunk.seq) best = { kind, chunk };
    }
    if (!best) return undefined;
    const { kind, chunk } = best;
    const offset = cursor.offsets[kind];
    const data = chunk.buf.subarray(offset - chunk.offset, chunk.length);
    cursor.offsets[kind] = chunk.offset + chunk.length;
    if (cursor.blocking) this.afterRead();
    return { case: "data", kind, offset, data };
  }

  /** Drops every byte no blocking reader still needs (a finished process's log, under memory pressure). */
  release(): void {
    for (const kind of OUTPUT_KINDS) this.evict(this.streams[kind], 0);
  }

  private appendTo(stream: StreamLog, chunk: Chunk, data: Uint8Array): void {
    const needed = chunk.length + data.byteLength;
    if (needed > chunk.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.min(COALESCE_MAX * 2, nextPowerOfTwo(needed)));
      chunk.buf.copy(grown, 0, 0, chunk.length);
      stream.retained += grown.length - chunk.buf.length;
      chunk.buf = grown;
    }
    chunk.buf.set(data, chunk.length);
    chunk.length = needed;
  }

  private push(stream: StreamLog, chunk: Chunk): void {
    if (stream.size === 0) stream.start = chunk.offset;
    stream.chunks.push(chunk);
    stream.retained += cost(chunk);
  }

  /** Evicts the oldest bytes beyond `limit`, never any a blocking reader has yet to read. */
  private evict(stream: StreamLog, limit = this.limit): void {
    if (stream.retained <= limit) return;
    const keepFrom = this.blockingMin(stream.kind);
    while (stream.retained > limit) {
      const first = stream.first();
      if (!first) break;
      const firstEnd = first.offset + first.length;
      if (stream.size > 1 || limit === 0) {
        if (firstEnd > keepFrom) break;
        stream.shift();
        continue;
      }
      // One chunk bigger than the limit: keep its tail (copied, so the rest is freed).
      const drop = Math.min(first.length - Math.max(0, limit - CHUNK_OVERHEAD), keepFrom - first.offset);
      if (drop <= 0) break;
      const tail = Buffer.from(first.buf.subarray(drop, first.length));
      stream.retained -= cost(first);
      first.buf = tail;
      first.length = tail.length;
      first.offset += drop;
      first.owned = false;
      stream.retained += cost(first);
      stream.start = first.offset;
      break;
    }
  }

  /** The lowest offset a blocking reader still has to read on a stream (Infinity if none). */
  private blockingMin(kind: OutputKind): number {
    let min = Number.POSITIVE_INFINITY;
    for (const cursor of this.cursors) {
      if (cursor.blocking && cursor.offsets[kind] < min) min = cursor.offsets[kind];
    }
    return min;
  }

  /** What blocking readers have yet to read (bytes plus bookkeeping) on the stream that lags most. */
  private blockedBytes(): number {
    let worst = 0;
    for (const kind of OUTPUT_KINDS) {
      const stream = this.streams[kind];
      const from = Math.max(this.blockingMin(kind), stream.start);
      if (from >= stream.end) continue;
      const unreadChunks = stream.chunks.length - stream.indexOf(from);
      worst = Math.max(worst, stream.end - from + unreadChunks * CHUNK_OVERHEAD);
    }
    return worst;
  }

  private afterRead(): void {
    for (const kind of OUTPUT_KINDS) this.evict(this.streams[kind]);
    if (this.paused) this.updatePressure();
  }

  private updatePressure(): void {
    const blocked = this.blockedBytes();
    if (!this.paused && blocked > this.limit) {
      this.paused = true;
      this.onPressure(true);
    } else if (this.paused && blocked <= this.limit / 2) {
      this.paused = false;
      this.onPressure(false);
    }
  }
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}
