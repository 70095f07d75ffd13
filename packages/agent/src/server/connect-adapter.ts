import { Code, ConnectError, createConnectRouter } from "@connectrpc/connect";
import {
  type ConnectNodeAdapterOptions,
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { EnvelopeReader } from "@tether/protocol/envelope";
import type { HttpRequest, HttpResponse } from "../http/respond.js";

type AdapterOptions = Omit<ConnectNodeAdapterOptions, "fallback"> & {
  /** Answers a request for no known RPC. */
  fallback: (req: HttpRequest, res: HttpResponse) => void;
  /** Hears a handler's failure to answer (an RPC's own errors go to its caller). */
  onError: (err: unknown, rpc: string) => void;
};

/** Request content types whose body is enveloped messages (gRPC-Web's base64 text form is not). */
const ENVELOPED = /^application\/(connect\+|grpc-web\+|grpc\+|grpc$|grpc-web$)/;

/**
 * connect-node's adapter, but a request body reaches connect-es in whole messages.
 *
 * connect-es reassembles what arrives in time quadratic in the number of pieces: its
 * envelope decoder sums its whole piece list and shifts it for every piece, and a unary
 * body without a length is joined by shifting its piece list. A client that sends one
 * message in 1-byte HTTP/2 frames (20 KB took 3 s of CPU) could stall the agent. So
 * enveloped bodies are split here, in linear time, and handed on one whole message per
 * piece; other bodies are joined once. Both keep to readMaxBytes before buffering.
 */
export function connectAdapter(options: AdapterOptions): (req: HttpRequest, res: HttpResponse) => void {
  options.acceptCompression ??= [compressionGzip, compressionBrotli];
  const readMaxBytes = options.readMaxBytes ?? 0xffffffff;
  const router = createConnectRouter(options);
  options.routes(router);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  return (req, res) => {
    const handler = handlers.get(req.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      options.fallback(req, res);
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues?.(req));
    if (isByteStream(uReq.body)) {
      const type = uReq.header.get("content-type") ?? "";
      uReq.body = ENVELOPED.test(type) ? wholeMessages(uReq.body, readMaxBytes) : wholeBody(uReq.body, readMaxBytes);
    }
    handler(uReq)
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((err: unknown) => {
        if (ConnectError.from(err).code === Code.Aborted) return;
        options.onError(err, `${handler.service.typeName}/${handler.method.name}`);
      });
  };
}

function isByteStream(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

const NO_HEADER = Buffer.alloc(5);

/** The body's enveloped messages, one per piece (header and payload), re-read in linear time. */
export async function* wholeMessages(body: AsyncIterable<Uint8Array>, readMaxBytes: number): AsyncGenerator<Buffer> {
  const reader = new EnvelopeReader();
  for await (const chunk of body) {
    reader.push(chunk);
    for (let env = reader.nextParts(); env; env = reader.nextParts()) {
      const whole = Buffer.concat([NO_HEADER, ...env.parts]);
      whole[0] = env.flags;
      whole.writeUInt32BE(whole.length - 5, 1);
      yield whole;
    }
    const size = reader.pendingSize;
    if (size !== undefined && size > readMaxBytes) throw tooLarge(size, readMaxBytes);
  }
  // The error connect-es gives a body cut inside a message.
  if (reader.pending > 0) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
}

/** The body as one piece, joined once. */
export async function* wholeBody(body: AsyncIterable<Uint8Array>, readMaxBytes: number): AsyncGenerator<Buffer> {
  const pieces: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of body) {
    length += chunk.byteLength;
    if (length > readMaxBytes) throw tooLarge(length, readMaxBytes);
    pieces.push(chunk);
  }
  yield Buffer.concat(pieces, length);
}

function tooLarge(size: number, max: number): ConnectError {
  return new ConnectError(`message size ${size} is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted);
}
