import net from "node:net";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Tunnel, type TunnelRequest, type TunnelResponseSchema } from "@tether/protocol/tunnel";
import type { AgentContext } from "../context.js";
import type { AgentService } from "../server/service.js";

type TunnelResponseInit = MessageInitShape<typeof TunnelResponseSchema>;

/** Where a tunnel goes when its `open` names no host. */
const DEFAULT_HOST = "127.0.0.1";
/** How long connecting may take (an address that drops SYNs would hang for minutes). */
const CONNECT_TIMEOUT_MS = 30_000;

/**
 * `tether.v1.Tunnel`: a TCP connection to a port inside the sandbox, carried over the
 * agent's own connection. Flow control is end to end: the socket is read only as fast
 * as the response stream drains, and the next request message is taken only once the
 * socket took the last one, so a slow reader on either side holds the other back and
 * the agent buffers no more than a few windows.
 */
export function createTunnelService(ctx: AgentContext): AgentService {
  const sockets = new Set<net.Socket>();
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
          if (!Number.isInteger(port) || port < 1 || port > 65535) {
            throw new ConnectError(`port ${port} is not a TCP port (1-65535)`, Code.InvalidArgument);
          }
          const host = askedHost || DEFAULT_HOST;
          const where = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
          const socket = await connect(host, port, where, context.signal);
          sockets.add(socket);
          const abort = () => socket.destroy();
          context.signal.addEventListener("abort", abort, { once: true });
          ctx.log.debug({ target: where }, "tunnel opened");
          try {
            yield {
              message: { case: "opened", value: { address: socket.remoteAddress ?? host, port } },
            } satisfies TunnelResponseInit;
            const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
            let upstreamError: unknown;
            const upstream = pumpRequests(incoming, socket);
            // A failure of the client's half ends the socket and is reported below (never
            // as an unhandled rejection).
            upstream.catch((err: unknown) => {
              upstreamError = err;
              socket.destroy();
            });
            try {
              for await (const chunk of socket.iterator({ destroyOnReturn: false })) {
                yield { message: { case: "data", value: chunk as Buffer } } satisfies TunnelResponseInit;
              }
            } catch (err) {
              throw midStreamError(upstreamError ?? err, where);
            }
            yield { message: { case: "eof", value: {} } } satisfies TunnelResponseInit;
            // The sandbox side is done sending; the call lasts until the client's half ends
            // too, or the socket goes (a peer that closed fully refuses more bytes).
            await Promise.race([upstream, closed]).catch((err: unknown) => {
              throw midStreamError(upstreamError ?? err, where);
            });
            if (socket.errored) throw midStreamError(upstreamError ?? socket.errored, where);
          } finally {
            context.signal.removeEventListener("abort", abort);
            socket.destroy();
            sockets.delete(socket);
            ctx.log.debug({ target: where }, "tunnel closed");
          }
        },
      });
    },

    async close() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Connects to host:port; refusals and lookups fail with a Connect error that names both. */
function connect(host: string, port: number, where: string, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true, timeout: CONNECT_TIMEOUT_MS });
    const fail = (err: ConnectError) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(err);
    };
    const onAbort = () => fail(new ConnectError(`tunnel to ${where} cancelled while connecting`, Code.Canceled));
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("timeout", () =>
      fail(new ConnectError(`connecting to ${where} inside the sandbox timed out`, Code.Unavailable)),
    );
    socket.once("error", (err) => fail(connectError(err, where)));
    socket.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("timeout");
      socket.removeAllListeners("error");
      socket.setTimeout(0);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

function connectError(err: NodeJS.ErrnoException, where: string): ConnectError {
  switch (err.code) {
    case "ECONNREFUSED":
      return new ConnectError(
        `connection refused: nothing listens on ${where} inside the sandbox`,
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new ConnectError(`cannot resolve ${where} inside the sandbox (${err.code})`, Code.Unavailable);
    default:
      return new ConnectError(
        `cannot connect to ${where} inside the sandbox: ${err.message}`,
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
  }
}

/** Writes the client's bytes to the socket, one message at a time as the socket drains; FIN at the end. */
async function pumpRequests(incoming: AsyncIterator<TunnelRequest>, socket: net.Socket): Promise<void> {
  for (;;) {
    const next = await incoming.next();
    if (next.done) break;
    const message = next.value.message;
    if (message.case !== "data") {
      throw new ConnectError("only a tunnel's first message may be `open`", Code.InvalidArgument);
    }
    if (message.value.length === 0) continue;
    if (!socket.write(message.value)) await drained(socket);
  }
  if (!socket.destroyed) socket.end();
}

function drained(socket: net.Socket): Promise<void> {
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
