import { randomUUID } from "node:crypto";
import type net from "node:net";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  Tunnel,
  type TunnelRequest,
  type TunnelResponseSchema,
  type TunnelWriteRequest,
  type TunnelWriteResponseSchema,
} from "@tether/protocol/tunnel";
import type { AgentContext } from "../context.js";
import type { AgentService } from "../rpc/service.js";
import { connect, DEFAULT_HOST, isTcpPort, targetName } from "./connect.js";

type TunnelResponseInit = MessageInitShape<typeof TunnelResponseSchema>;
type TunnelWriteResponseInit = MessageInitShape<typeof TunnelWriteResponseSchema>;

/** A tunnel's client half, sent with `Write`: pumps it into the socket until it ends or the tunnel closes. */
type Upload = (incoming: AsyncIterator<TunnelWriteRequest>) => Promise<void>;

/**
 * `tether.v1.Tunnel`: a TCP connection to a port inside the sandbox, carried over the
 * agent's own connection. Flow control is end to end: the socket is read only as fast
 * as the response stream drains, and the next request message is taken only once the
 * socket took the last one, so a slow reader on either side holds the other back and
 * the agent buffers no more than a few windows.
 *
 * The client's bytes come on the `Open` request stream, or (`separate_upload`) with a
 * `Write` call, which the SDK makes on its second connection, so that each HTTP/2
 * connection carries bulk one way only (see tunnel.proto).
 */
export function createTunnelService(ctx: AgentContext): AgentService {
  const sockets = new Set<net.Socket>();
  /** Tunnels opened with `separate_upload` whose `Write` has not come yet, by upload id. */
  const uploads = new Map<string, Upload>();
  return {
    register(router) {
      router.service(Tunnel, {
        async *open(requests, context): AsyncGenerator<TunnelResponseInit> {
          const incoming = requests[Symbol.asyncIterator]();
          const first = await incoming.next();
          if (first.done || first.value.message.case !== "open") {
            throw new ConnectError("a tunnel's first message must be `open` (port and host)", Code.InvalidArgument);
          }
          const { port, host: askedHost } = first.value.message.value;
          if (!isTcpPort(port)) {
            throw new ConnectError(`port ${port} is not a TCP port (1-65535)`, Code.InvalidArgument);
          }
          const host = askedHost || DEFAULT_HOST;
          const where = targetName(host, port);
          const socket = await connect(host, port, where, context.signal);
          sockets.add(socket);
          const abort = () => socket.destroy();
          context.signal.addEventListener("abort", abort, { once: true });
          ctx.log.debug({ target: where }, "tunnel opened");
          const events = new TunnelEvents(socket);
          const { acks, separateUpload } = first.value.message.value;
          const uploadId = separateUpload ? randomUUID() : "";
          const pump = (messages: AsyncIterator<Uint8Array>) =>
            pumpRequests(messages, socket, acks && !separateUpload ? (n) => events.written(n) : undefined).then(
              () => events.upstreamDone(),
              (err: unknown) => {
                events.upstreamDone(err);
                socket.destroy();
              },
            );
          if (separateUpload) {
            uploads.set(uploadId, (writes) => {
              uploads.delete(uploadId);
              // Resolves once the bytes are in or the socket is gone: a Write call must not
              // outlive its tunnel waiting for bytes nobody will take.
              const gone = new Promise<void>((resolve) => {
                if (socket.destroyed) resolve();
                else socket.once("close", () => resolve());
              });
              return Promise.race([pump(writeData(writes)), gone]);
            });
          }
          try {
            yield {
              message: { case: "opened", value: { address: socket.remoteAddress ?? host, port, uploadId } },
            } satisfies TunnelResponseInit;
            // The request stream carries nothing more with a separate upload.
            if (!separateUpload) void pump(requestData(incoming));
            for (;;) {
              const event = await events.next();
              if (event.type === "done") break;
              if (event.type === "error") throw midStreamError(event.error, where);
              if (event.type === "data") {
                yield { message: { case: "data", value: event.data } } satisfies TunnelResponseInit;
                socket.resume();
              } else if (event.type === "written") {
                yield { message: { case: "written", value: BigInt(event.bytes) } } satisfies TunnelResponseInit;
              } else {
                yield { message: { case: "eof", value: {} } } satisfies TunnelResponseInit;
              }
            }
          } finally {
            uploads.delete(uploadId);
            context.signal.removeEventListener("abort", abort);
            socket.destroy();
            sockets.delete(socket);
            ctx.log.debug({ target: where }, "tunnel closed");
          }
        },

        async write(requests): Promise<TunnelWriteResponseInit> {
          const incoming = requests[Symbol.asyncIterator]();
          const first = await incoming.next();
          if (first.done || first.value.message.case !== "uploadId") {
            throw new ConnectError("a tunnel write's first message must be `upload_id`", Code.InvalidArgument);
          }
          const upload = uploads.get(first.value.message.value);
          if (!upload) {
            throw new ConnectError(
              "no open tunnel has this upload id (it closed, or its upload was already claimed)",
              Code.NotFound,
            );
          }
          await upload(incoming);
          return {};
        },
      });
    },

    async close() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** The bytes of an `Open` request stream after its first message. */
async function* requestData(incoming: AsyncIterator<TunnelRequest>): AsyncGenerator<Uint8Array> {
  for (let next = await incoming.next(); !next.done; next = await incoming.next()) {
    const message = next.value.message;
    if (message.case !== "data") {
      throw new ConnectError("only a tunnel's first message may be `open`", Code.InvalidArgument);
    }
    yield message.value;
  }
}

/** The bytes of a `Write` request stream after its first message. */
async function* writeData(incoming: AsyncIterator<TunnelWriteRequest>): AsyncGenerator<Uint8Array> {
  for (let next = await incoming.next(); !next.done; next = await incoming.next()) {
    const message = next.value.message;
    if (message.case !== "data") {
      throw new ConnectError("only a tunnel write's first message may be `upload_id`", Code.InvalidArgument);
    }
    yield message.value;
  }
}

/**
 * Writes the client's bytes to the socket, one message at a time as the socket drains;
 * FIN at the end. `written` hears of each message once the socket took it.
 */
async function pumpRequests(
  messages: AsyncIterator<Uint8Array>,
  socket: net.Socket,
  written?: (bytes: number) => void,
): Promise<void> {
  for (;;) {
    const next = await messages.next();
    if (next.done) break;
    const bytes = next.value.length;
    if (bytes === 0) continue;
    // A destroyed socket neither takes the bytes nor ever drains.
    if (socket.destroyed) throw socket.errored ?? new Error("the connection closed");
    const accepted = socket.write(next.value, written && ((err) => err || written(bytes)));
    if (!accepted) await drained(socket);
  }
  if (!socket.destroyed) socket.end();
}

function drained(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return Promise.reject(socket.errored ?? new Error("the connection closed"));
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      socket.off("drain", onDrain);
      socket.off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(socket.errored ?? new Error("the connection closed"));
    socket.on("drain", onDrain);
    socket.on("close", onClose);
  });
}

/** A failure after the tunnel opened: a reset by the sandbox side, or a bad client message. */
function midStreamError(err: unknown, where: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const errno = (err as NodeJS.ErrnoException).code;
  if (errno === "ECONNRESET" || errno === "EPIPE") {
    return new ConnectError(`${where} reset the connection`, Code.Aborted);
  }
  return new ConnectError(`tunnel to ${where} failed: ${(err as Error).message}`, Code.Aborted);
}

type TunnelEvent =
  | { type: "data"; data: Buffer }
  | { type: "written"; bytes: number }
  | { type: "eof" }
  | { type: "error"; error: unknown }
  | { type: "done" };

/**
 * What the response stream sends next, from the socket and from the client's half: at
 * most one chunk of the socket's data at a time (the socket stays paused until it was
 * sent, so a slow client holds the socket back), acknowledgements (merged while waiting),
 * the socket's end, and the tunnel's end: once the socket ended and the client's half is
 * done, or the socket closed.
 */
class TunnelEvents {
  private data: Buffer | undefined;
  private writtenBytes = 0;
  private eof = false;
  private eofSent = false;
  private upstreamFinished = false;
  private closed = false;
  private error: unknown;
  private wake: (() => void) | undefined;

  constructor(socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      socket.pause();
      this.data = chunk;
      this.notify();
    });
    socket.once("end", () => {
      this.eof = true;
      this.notify();
    });
    socket.on("error", (err) => {
      this.error ??= err;
      this.notify();
    });
    socket.once("close", () => {
      this.closed = true;
      this.notify();
    });
  }

  written(bytes: number): void {
    this.writtenBytes += bytes;
    this.notify();
  }

  upstreamDone(err?: unknown): void {
    this.upstreamFinished = true;
    if (err !== undefined) this.error = err;
    this.notify();
  }

  async next(): Promise<TunnelEvent> {
    for (;;) {
      const event = this.take();
      if (event) return event;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private take(): TunnelEvent | undefined {
    if (this.error !== undefined) return { type: "error", error: this.error };
    if (this.writtenBytes > 0) {
      const bytes = this.writtenBytes;
      this.writtenBytes = 0;
      return { type: "written", bytes };
    }
    if (this.data) {
      const data = this.data;
      this.data = undefined;
      return { type: "data", data };
    }
    if (this.eof && !this.eofSent) {
      this.eofSent = true;
      return { type: "eof" };
    }
    // The sandbox side is done sending; the call lasts until the client's half ends too,
    // or the socket goes (a peer that closed fully refuses more bytes).
    if (this.eofSent && (this.upstreamFinished || this.closed)) return { type: "done" };
    if (this.closed && !this.eof) return { type: "error", error: new Error("the connection closed") };
    return undefined;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
