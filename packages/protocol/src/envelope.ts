/** Envelope flag: the message is compressed. */
export const FLAG_COMPRESSED = 0b01;
/** Envelope flag: Connect's end-of-stream message (JSON), the last of a response. */
export const FLAG_END_STREAM = 0b10;

/** Received pieces shorter than this are copied together rather than kept as views. */
const SMALL_PIECE = 4 << 10;
/** Size of the buffers small pieces are copied into. */
const SLAB = 64 << 10;

/** One enveloped message, as the buffers its payload lies in. */
export interface EnvelopeParts {
  flags: number;
  /** Views of the received buffers (or of copies of small ones), in order; may be empty. */
  parts: Buffer[];
}

/**
 * Splits received bytes into enveloped messages (1 flag byte, 4 length bytes, payload),
 * as Connect, gRPC and gRPC-Web frame them, in time linear in the bytes whatever the
 * sizes they arrive in. A payload that lies in large received buffers is handed out as
 * views of them, nothing copied; pieces under 4 KiB are copied into 64 KiB slabs, so a
 * peer that trickles bytes costs one small copy per byte, not a list entry (or a rescan).
 */
export class EnvelopeReader {
  private readonly done: EnvelopeParts[] = [];
  private doneAt = 0;
  private readonly header = Buffer.alloc(5);
  private headerLength = 0;
  /** The payload size of the message being read, once its header is complete. */
  private size = -1;
  private flags = 0;
  private parts: Buffer[] = [];
  private received = 0;
  private slab: Buffer | undefined;
  /** Where the unfinished part in the slab starts, and how far it is filled. */
  private slabStart = 0;
  private slabEnd = 0;

  /** Adds received bytes; complete messages are then available from nextParts. */
  push(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Offsets rather than subarrays: a one-byte chunk must not cost an allocation per step.
    let at = 0;
    while (at < buf.length) {
      if (this.size < 0) {
        if (this.headerLength === 0 && buf.length - at >= 5) {
          this.begin(buf[at], buf.readUInt32BE(at + 1));
          at += 5;
        } else {
          const n = Math.min(5 - this.headerLength, buf.length - at);
          buf.copy(this.header, this.headerLength, at, at + n);
          this.headerLength += n;
          at += n;
          if (this.headerLength < 5) return;
          this.headerLength = 0;
          this.begin(this.header[0], this.header.readUInt32BE(1));
        }
        if (this.size < 0) continue;
      }
      const end = Math.min(buf.length, at + this.size - this.received);
      this.add(buf, at, end);
      at = end;
      if (this.received === this.size) this.finish();
    }
  }

  /** The next complete message, its payload joined (a view when it lies in one buffer). */
  next(): { flags: number; data: Buffer } | undefined {
    const env = this.nextParts();
    return env && { flags: env.flags, data: joinParts(env.parts) };
  }

  /** The next complete message as the buffers its payload lies in. */
  nextParts(): EnvelopeParts | undefined {
    if (this.doneAt === this.done.length) return undefined;
    const env = this.done[this.doneAt];
    this.doneAt++;
    if (this.doneAt === this.done.length) {
      this.done.length = 0;
      this.doneAt = 0;
    }
    return env;
  }

  /** Bytes of an unfinished message held (its header included). */
  get pending(): number {
    return this.size < 0 ? this.headerLength : 5 + this.received;
  }

  /** The payload size of the unfinished message, once its header is in. */
  get pendingSize(): number | undefined {
    return this.size < 0 ? undefined : this.size;
  }

  private begin(flags: number, size: number): void {
    this.flags = flags;
    this.size = size;
    this.received = 0;
    if (size === 0) this.finish();
  }

  /** Takes buf[from, to) into the message's payload. */
  private add(buf: Buffer, from: number, to: number): void {
    const length = to - from;
    if (length === 0) return;
    this.received += length;
    // A whole payload in one piece, or a large piece: a view, nothing copied.
    if (length >= SMALL_PIECE || length === this.size) {
      this.closeSlabPart();
      this.parts.push(buf.subarray(from, to));
      return;
    }
    if (!this.slab || this.slabEnd + length > this.slab.length) {
      this.closeSlabPart();
      this.slab = Buffer.allocUnsafe(SLAB);
      this.slabStart = 0;
      this.slabEnd = 0;
    }
    if (length === 1) this.slab[this.slabEnd] = buf[from];
    else buf.copy(this.slab, this.slabEnd, from, to);
    this.slabEnd += length;
  }

  /** Moves what the slab holds of this message into its parts; the slab's rest stays usable. */
  private closeSlabPart(): void {
    if (!this.slab || this.slabEnd === this.slabStart) return;
    this.parts.push(this.slab.subarray(this.slabStart, this.slabEnd));
    this.slabStart = this.slabEnd;
  }

  private finish(): void {
    this.closeSlabPart();
    this.done.push({ flags: this.flags, parts: this.parts });
    this.parts = [];
    this.size = -1;
    this.received = 0;
  }
}

/** One buffer of the parts: the part itself when there is one, else a copy. */
export function joinParts(parts: Buffer[]): Buffer {
  if (parts.length === 1) return parts[0];
  return parts.length === 0 ? Buffer.alloc(0) : Buffer.concat(parts);
}
