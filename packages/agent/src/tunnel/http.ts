import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type net from "node:net";
import type { Readable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { TUNNEL_ADDRESS_HEADER, TUNNEL_ERROR_TRAILER, TUNNEL_UPLOAD_HEADER } from "@tether/protocol/constants";
import type { AgentContext } from "../context.js";
import { BodyError, type HttpRequest, type HttpResponse, sendError, sendJson } from "../http/respond.js";
import { connect, DEFAULT_HOST, isTcpPort, targetName } from "./connect.js";

/** Per agent: the sockets of raw tunnels whose upload no `POST /tunnel/write` has claimed yet, by upload id. */
const unclaimed = new WeakMap<AgentContext, Map<string, net.Socket>>();

function unclaimedOf(ctx: AgentContext): Map<string, net.Socket> {
  let uploads = unclaimed.get(ctx);
  if (!uploads) {
    uploads = new Map();
    unclaimed.set(ctx, uploads);
  }
  return uploads;
}

/**
 * `POST /tunnel?port=&host=`: a TCP connection inside the sandbox, its bytes piped
 * straight into the response (no envelopes, no protobuf), so that the socket is read only
 * as fast as the client takes them. The response ends with the socket's FIN; a reset by
 * the sandbox side ends it with the TUNNEL_ERROR_TRAILER. The client's bytes come with
 * `POST /tunnel/write?id=<the TUNNEL_UPLOAD_HEADER>`. The client cancelling this request
 * closes the socket. 502 when the port cannot be reached.
 */
export async function handleTunnelOpen(
  ctx: AgentContext,
  req: HttpRequest,
  res: HttpResponse,
  url: URL,
): Promise<void> {
  const asked = url.searchParams.get("port") ?? "";
  const port = Number(asked);
  if (!/^\d+$/.test(asked) || !isTcpPort(port)) {
    throw new BodyError(400, `port ${asked || "(none)"} is not a TCP port (1-65535)`);
  }
  const host = url.searchParams.get("host") || DEFAULT_HOST;
  const where = targetName(host, port);
  // Its body carries nothing: the client's bytes come with /tunnel/write.
  req.resume();
  const gone = new AbortController();
  res.once("close", () => gone.abort());
  let socket: net.Socket;
  try {
    socket = await connect(host, port, where, gone.signal);
  } catch (err) {
    const error = ConnectError.from(err);
    if (error.code !== Code.Canceled) sendError(res, 502, error.rawMessage);
    return;
  }
  // Gone before connecting began (its signal never fired): nobody takes this socket.
  if (gone.signal.aborted) {
    socket.destroy();
    return;
  }
  const uploads = unclaimedOf(ctx);
  const uploadId = randomUUID();
  uploads.set(uploadId, socket);
  ctx.log.debug({ target: where }, "tunnel opened");
  socket.once("close", () => {
    uploads.delete(uploadId);
    ctx.log.debug({ target: where }, "tunnel closed");
  });
  // A response ended by the socket's FIN leaves the socket to the upload; one cut short
  // (the client cancelled, or went away) takes the socket with it.
  let ended = false;
  res.once("finish", () => {
    ended = true;
  });
  res.once("close", () => {
    if (!ended) socket.destroy();
  });
  socket.on("error", (err: NodeJS.ErrnoException) => {
    socket.unpipe(res);
    if (ended || res.writableEnded) return;
    const reset = err.code === "ECONNRESET" || err.code === "EPIPE";
    res.addTrailers({ [TUNNEL_ERROR_TRAILER]: reset ? `${where} reset the connection` : err.message });
    res.end();
  });
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    [TUNNEL_UPLOAD_HEADER]: uploadId,
    [TUNNEL_ADDRESS_HEADER]: socket.remoteAddress ?? host,
  });
  // Headers now, not with the first bytes: the client waits for them to know the tunnel is up.
  // (HTTP/2's response has flushHeaders too, missing from its types.)
  (res as ServerResponse).flushHeaders();
  socket.pipe(res);
}

/**
 * `POST /tunnel/write?id=`: the client's half of a raw tunnel, its body piped straight
 * into the socket; its end sends the socket's FIN. Answered (200) once the socket took
 * every byte, or early if the socket closed: the rest of the body is then read and
 * dropped. The client cancelling it closes the socket. 404 when no tunnel waits for it.
 */
export function handleTunnelWrite(ctx: AgentContext, req: HttpRequest, res: HttpResponse, url: URL): void {
  const uploads = unclaimedOf(ctx);
  const uploadId = url.searchParams.get("id") ?? "";
  const socket = uploads.get(uploadId);
  if (!socket) {
    throw new BodyError(404, "no open tunnel has this upload id (it closed, or its upload was already claimed)");
  }
  uploads.delete(uploadId);
  // HTTP/2's own stream, not the compatibility request wrapped around it: one Readable less per chunk.
  const body: Readable = "stream" in req ? req.stream : req;
  let answered = false;
  const stop = pipeBatched(body, socket);
  const answer = () => {
    if (answered) return;
    answered = true;
    stop();
    body.resume();
    sendJson(res, 200, {});
  };
  socket.once("finish", answer);
  socket.once("close", answer);
  res.once("close", () => {
    if (!answered) socket.destroy();
  });
}

/**
 * Pipes `body` into the socket, all that arrives in one turn of the event loop in one
 * write: HTTP/2 hands a body over one DATA frame (16 KiB) at a time, and a syscall for
 * each cost the agent more CPU than everything else it does for a tunnel. Backpressure as
 * `pipe`'s: the body pauses while the socket holds more than its high-water mark. The
 * body's end sends the socket's FIN. Returns what stops it.
 */
function pipeBatched(body: Readable, socket: net.Socket): () => void {
  let corked = false;
  const flush = () => {
    corked = false;
    socket.uncork();
  };
  const onData = (chunk: Buffer) => {
    if (!corked) {
      corked = true;
      socket.cork();
      setImmediate(flush);
    }
    if (!socket.write(chunk)) body.pause();
  };
  const onDrain = () => body.resume();
  const onEnd = () => socket.end();
  body.on("data", onData);
  body.once("end", onEnd);
  socket.on("drain", onDrain);
  return () => {
    body.off("data", onData);
    body.off("end", onEnd);
    socket.off("drain", onDrain);
  };
}
