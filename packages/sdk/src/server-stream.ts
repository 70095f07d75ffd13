import type http2 from "node:http2";
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
import { EnvelopeReader, FLAG_COMPRESSED, FLAG_END_STREAM, joinParts as join } from "@tether/protocol/envelope";
import { type Connection, MAX_ATTEMPTS, readAll, responseOf, retryDelay } from "./connection.js";
import { ConnectionLostError } from "./errors.js";

export { EnvelopeReader, FLAG_COMPRESSED, FLAG_END_STREAM };

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
  options: {
    headers: Record<string, string>;
    signal?: AbortSignal;
    /**
     * Decodes a message that arrived in several received buffers as one or more messages
     * without joining them (see splitExecOutput); undefined to have it joined and decoded.
     */
    split?: (parts: Buffer[]) => MessageShape<O>[] | undefined;
  },
): AsyncGenerator<MessageShape<O>> {
  const body = toBinary(method.input, create(method.input, request));
  const envelope = Buffer.allocUnsafe(5 + body.length);
  envelope[0] = 0;
  envelope.writeUInt32BE(body.length, 1);
  envelope.set(body, 5);
  const path = `/${method.parent.typeName}/${method.name}`;
  let stream: http2.ClientHttp2Stream | undefined;
  const abort = () => stream && connection.cancel(stream);
  options.signal?.addEventListener("abort", abort, { once: true });
  const signal = options.signal;
  const cancelled =
    signal &&
    new Promise<never>((_, reject) => {
      const fail = () => reject(new ConnectError("the call was cancelled", Code.Canceled));
      if (signal.aborted) fail();
      else signal.addEventListener("abort", fail, { once: true });
    });
  cancelled?.catch(() => {});
  try {
    let headers: http2.IncomingHttpHeaders;
    // A call that never reached the agent (its session died first, as GOAWAY says) is sent
    // again on a new session: it cannot run twice, whatever it does.
    for (let attempt = 1; ; attempt++) {
      if (options.signal?.aborted) throw new ConnectError("the call was cancelled", Code.Canceled);
      stream = await connection.request("POST", path, {
        ...options.headers,
        "content-type": "application/connect+proto",
        "connect-protocol-version": "1",
      });
      stream.end(envelope);
      try {
        headers = await responseOf(stream);
        break;
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS || !connection.neverReachedAgent(stream)) throw err;
      }
      await retryDelay(attempt, options.signal);
    }
    const status = Number(headers[":status"]);
    if (status !== 200) {
      const text = await readAll(stream);
      throw errorFromJsonBytes(text, undefined, new ConnectError(`HTTP ${status}`, Code.Unknown));
    }
    const reader = new EnvelopeReader();
    let end: ReturnType<typeof endStreamFromJson> | undefined;
    // Read to the stream's own end even after the end-of-stream message, which comes just
    // before it: leaving the loop early would reset a stream that is about to end anyway.
    // Not `for await`: a cancelled call stops reading at once, without the iterator's return(),
    // which would reset the stream there and then (Connection.cancel may have to pace resets).
    const chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      const read = chunks.next();
      // A read a cancel outran settles with nobody waiting for it.
      read.catch(() => {});
      const { value: chunk, done } = await (cancelled ? Promise.race([read, cancelled]) : read);
      if (done) break;
      if (end) continue;
      reader.push(chunk);
      for (let env = reader.nextParts(); env; env = reader.nextParts()) {
        const { flags, parts } = env;
        if (flags & FLAG_END_STREAM) {
          end = endStreamFromJson(join(parts));
          break;
        }
        if (flags & FLAG_COMPRESSED) {
          throw new ConnectError("the agent sent a compressed message, which was not asked for", Code.Internal);
        }
        const split = parts.length > 1 ? options.split?.(parts) : undefined;
        if (split) yield* split;
        else yield fromBinary(method.output, join(parts));
      }
    }
    if (end?.error) throw end.error;
    if (end) return;
    if (options.signal?.aborted) throw new ConnectError("the call was cancelled", Code.Canceled);
    // Not a ConnectError: a stream its session took down with it (the agent went away with
    // GOAWAY ENHANCE_YOUR_CALM, then dropped the socket) may end rather than fail, and the
    // catch below tells that lost connection (ConnectionLostError) from an agent's mistake.
    throw new Error("the stream ended without an end-of-stream message");
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    // A reset stream or a dropped connection: the agent went away mid-call, or closed the
    // connection the call was on.
    const message = err instanceof Error ? err.message : String(err);
    const lost = stream && connection.sessionLost(stream);
    const cause = lost ? new ConnectionLostError(lost, { cause: err }) : err;
    throw new ConnectError(lost ? `${lost}: ${message}` : message, Code.Unavailable, undefined, undefined, cause);
  } finally {
    options.signal?.removeEventListener("abort", abort);
    // Only a response not read to its end is cancelled. Closing a stream whose response has
    // ended, before its 'close', still sends a reset; the agent's HTTP/2 server counts
    // resets and closes the session after about a thousand in a burst (see untilEnd).
    if (stream && !stream.closed && !stream.readableEnded) abort();
  }
}
