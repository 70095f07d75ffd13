import type { Writable } from "node:stream";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { HttpResponse } from "../http/respond.js";

/** The Node response a Connect handler's call writes to (set by the request handler). */
export const kNodeResponse = createContextKey<HttpResponse | undefined>(undefined, {
  description: "the Node response of the call",
});

/**
 * Binary response content types connect-es sets for a streaming call, one per protocol
 * (Connect, gRPC, gRPC-Web). All three frame a message the same way: flags byte (0: a plain
 * message), 4-byte big-endian length, protobuf bytes.
 */
const BINARY_STREAM_TYPES = new Set([
  "application/connect+proto",
  "application/grpc+proto",
  "application/grpc-web+proto",
]);

/** Response headers that say connect-es compresses this call's messages. */
const ENCODING_HEADERS = ["connect-content-encoding", "grpc-encoding"];

/** Buffered response bytes past which a writer waits for the transport to catch up. */
const MAX_BUFFERED = 1 << 20;

/**
 * Writes a streaming call's hot messages straight to the HTTP response, bypassing
 * connect-es's pipeline: each message is a small hand-encoded head (envelope and protobuf
 * prefix) followed by the payload bytes themselves, so a 64 KiB output chunk is neither
 * re-encoded nor copied. Only for binary protobuf without compression; every other message
 * of the call still goes through connect-es, and only between its writes (a handler
 * resumes after a yield only once that message was written), so the order holds.
 */
export class RawMessageWriter {
  private constructor(private readonly sink: Writable) {}

  /** A writer for the call, or undefined when its codec needs connect-es (JSON, compression). */
  static for(context: HandlerContext): RawMessageWriter | undefined {
    const res = context.values.get(kNodeResponse);
    if (!res || !BINARY_STREAM_TYPES.has(context.responseHeader.get("content-type") ?? "")) return undefined;
    if (ENCODING_HEADERS.some((name) => context.responseHeader.has(name))) return undefined;
    const sink: Writable = "stream" in res ? res.stream : res;
    return new RawMessageWriter(sink);
  }

  /** Writes one message: `head` (envelope and protobuf prefix) then `payload`, its last field's bytes. */
  write(head: Uint8Array, payload: Uint8Array): void {
    this.sink.write(head);
    this.sink.write(payload);
  }

  /** Batches the writes until `uncork` into one system call. */
  cork(): void {
    this.sink.cork();
  }

  uncork(): void {
    this.sink.uncork();
  }

  /** True when enough is buffered that the writer should wait for `drained`. */
  get full(): boolean {
    return this.sink.writableLength > MAX_BUFFERED;
  }

  /** Resolves once the buffered bytes were handed to the transport, or the response is gone. */
  drained(): Promise<void> {
    const sink = this.sink;
    // No drain comes unless a write was refused (a high-water mark above MAX_BUFFERED).
    if (sink.destroyed || sink.writableLength === 0 || !sink.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        sink.off("drain", done);
        sink.off("close", done);
        sink.off("error", done);
        resolve();
      };
      sink.on("drain", done);
      sink.on("close", done);
      sink.on("error", done);
    });
  }

  /** The response can take no more (the client went away). */
  get closed(): boolean {
    return this.sink.destroyed || this.sink.writableEnded;
  }
}
