import http2 from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodServerStreaming,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { endStreamFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { type Connection, readAll, responseOf } from "./connection.js";

export const FLAG_COMPRESSED = 0b01;
export const FLAG_END_STREAM = 0b10;

/**
 * A Connect-protocol server-streaming call made directly on the shared HTTP/2 session.
 *
 * Process output is the SDK's one high-volume path. connect-es's generic client runs each
 * message through several async-generator stages and copies it into a fresh zeroed array;
 * at 64 KiB a message that costs as much CPU as the agent spends producing it. Here a
 * message is decoded straight from the received bytes (a view when it lies within one
 * chunk), so the client keeps up with the agent. Unary calls keep using connect-es.
 */
export async function* serverStream<I extends DescMessage, O extends DescMessage>(
  connection: Connection,
  method: DescMethodServerStreaming<I, O>,
  request: MessageInitShape<I>,
  options: { headers: Record<string, string>; signal?: AbortSignal },
): AsyncGenerator<MessageShape<O>> {
  const body = toBinary(method.input, create(method.input, request));
  const envelope = Buffer.allocUnsafe(5 + body.length);
  envelope[0] = 0;
  envelope.writeUInt32BE(body.length, 1);
  envelope.set(body, 5);
  const path = `/${method.parent.typeName}/${method.name}`;
  const stream = await connection.request("POST", path, {
    ...options.headers,
    "content-type": "application/connect+proto",
    "connect-protocol-version": "1",
  });
  const abort = () => stream.close(http2.constants.NGHTTP2_CANCEL);
  options.signal?.addEventListener("abort", abort, { once: true });
  try {
    stream.end(envelope);
    const headers = await responseOf(stream);
    const status = Number(headers[":status"]);
    if (status !== 200) {
      const text = await readAll(stream);
      throw errorFromJsonBytes(text, undefined, new ConnectError(`HTTP ${status}`, Code.Unknown));
    }
    const reader = new EnvelopeReader();
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      reader.push(chunk);
      for (let env = reader.next(); env; env = reader.next()) {
        if (env.flags & FLAG_END_STREAM) {
          const end = endStreamFromJson(env.data);
          if (end.error) throw end.error;
          return;
        }
        if (env.flags & FLAG_COMPRESSED) {
          throw new ConnectError("the agent sent a compressed message, which was not asked for", Code.Internal);
        }
        yield fromBinary(method.output, env.data);
      }
    }
    if (options.signal?.aborted) throw new ConnectError("the call was cancelled", Code.Canceled);
    throw new ConnectError("the stream ended without an end-of-stream message", Code.Unavailable);
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    // A reset stream or a dropped connection: the agent went away mid-call.
    const message = err instanceof Error ? err.message : String(err);
    throw new ConnectError(message, Code.Unavailable, undefined, undefined, err);
  } finally {
    options.signal?.removeEventListener("abort", abort);
    if (!stream.closed) abort();
  }
}

/** Splits received bytes into enveloped messages (1 flag byte, 4 length bytes, payload). */
export class EnvelopeReader {
  private chunks: Buffer[] = [];
  private length = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  next(): { flags: number; data: Uint8Array } | undefined {
    if (this.length < 5) return undefined;
    const header = this.peek(5);
    const size = header.readUInt32BE(1);
    if (this.length < 5 + size) return undefined;
    const frame = this.take(5 + size);
    return { flags: frame[0], data: frame.subarray(5) };
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0];
    return first.length >= n ? first : Buffer.concat(this.chunks, n);
  }

  /** Removes n bytes; a view when they lie in the first chunk, else one copy. */
  private take(n: number): Buffer {
    this.length -= n;
    const first = this.chunks[0];
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const chunk = this.chunks[0];
      const want = n - offset;
      if (chunk.length <= want) {
        out.set(chunk, offset);
        offset += chunk.length;
        this.chunks.shift();
      } else {
        out.set(chunk.subarray(0, want), offset);
        this.chunks[0] = chunk.subarray(want);
        offset += want;
      }
    }
    return out;
  }
}
