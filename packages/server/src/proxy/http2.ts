import type http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type { TLSSocket } from "node:tls";
import { proxyTarget } from "./route.js";
import { HTTP2_SESSION_WINDOW, HTTP2_STREAM_WINDOW, type SandboxProxy } from "./sandbox-proxy.js";

/** What every HTTP/2 connection opens with (RFC 9113, 3.4); no HTTP/1 request starts with "PRI ". */
const H2_PREFACE_START = "PRI ";

/**
 * HTTP/2 on the same port, for the sandbox proxy: @tether/sdk speaks HTTP/2 to agents
 * (its file transfers, stdin and tunnels are raw full-duplex HTTP/2 streams). In clear, a
 * connection that opens with HTTP/2's preface (prior knowledge, h2c) goes to an HTTP/2
 * server whose requests the proxy forwards; over TLS, one that negotiated `h2` by ALPN.
 * Any other goes to the HTTP/1 server as before. The API itself stays HTTP/1.1 (E2B's
 * SDKs and our control client use it).
 */
/** The HTTP/2 client sessions, which the HTTP/1 server's close does not see. */
export interface Http2Clients {
  /** Refuses new streams; open ones may finish. */
  close(): void;
  /** Cuts what is still open. */
  destroy(): void;
}

export function acceptHttp2(
  server: http.Server,
  tls: boolean,
  proxy: SandboxProxy,
  domain: string | undefined,
): Http2Clients {
  const h2 = http2.createServer({ settings: { initialWindowSize: HTTP2_STREAM_WINDOW } }, (req, res) => {
    const target = proxyTarget(req.headers, domain);
    if (target) {
      proxy.handle(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse, target);
      return;
    }
    const body = JSON.stringify({ code: 400, message: "the API speaks HTTP/1.1; HTTP/2 is for sandboxes' ports" });
    res.writeHead(400, { "content-type": "application/json" });
    res.end(body);
  });
  h2.on("sessionError", () => {});
  // Clients keep HTTP/2 sessions open; closing the server ends them (new streams refused, open ones finish).
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    // Node's 64 KiB connection window would be shared by all of a client's streams.
    session.once("connect", () => session.setLocalWindowSize(HTTP2_SESSION_WINDOW));
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  if (tls) {
    const http1 = server.listeners("secureConnection") as ((socket: TLSSocket) => void)[];
    server.removeAllListeners("secureConnection");
    server.on("secureConnection", (socket: TLSSocket) => {
      if (socket.alpnProtocol === "h2") h2.emit("connection", socket);
      else for (const listener of http1) listener.call(server, socket);
    });
    return clientsOf(sessions);
  }
  const http1 = server.listeners("connection") as ((socket: net.Socket) => void)[];
  server.removeAllListeners("connection");
  server.on("connection", (socket: net.Socket) => {
    // Until the first bytes say which protocol, no server's timeouts watch the connection.
    const silent = setTimeout(() => socket.destroy(), server.headersTimeout || 60_000);
    socket.once("close", () => clearTimeout(silent));
    socket.once("data", (chunk: Buffer) => {
      clearTimeout(silent);
      socket.pause();
      socket.unshift(chunk);
      if (chunk.subarray(0, H2_PREFACE_START.length).toString("latin1") === H2_PREFACE_START) {
        // HTTP/2 reads what is already buffered on the socket (the unshifted preface) itself.
        h2.emit("connection", socket);
        return;
      }
      for (const listener of http1) listener.call(server, socket);
      parseFromStream(socket);
      socket.resume();
    });
  });
  return clientsOf(sessions);
}

/**
 * Has Node's HTTP/1 parser read a sniffed socket through its stream's 'data' events, so a
 * request's backpressure is the stream's own. Left alone, the parser reads the socket's
 * handle directly and keeps the handle in step with the stream by its pause and resume
 * events; a stream that has already delivered bytes (the sniffed ones) falls out of step:
 * a late 'resume' restarts the handle while the stream is paused, and nothing stops it
 * again. A request body then piles up in memory as fast as the client sends it (a 256 MiB
 * upload to a slower agent held 211 MB, the server's RSS peaked at 323 MB). A 'data'
 * listener is what makes Node's server parse from the stream (it cannot consume the handle
 * under someone else's listener); the listener itself is not needed afterwards.
 */
function parseFromStream(socket: net.Socket): void {
  const noop = () => {};
  socket.on("data", noop);
  socket.off("data", noop);
}

function clientsOf(sessions: Set<http2.Http2Session>): Http2Clients {
  return {
    close: () => {
      for (const session of sessions) session.close();
    },
    destroy: () => {
      for (const session of sessions) session.destroy();
    },
  };
}
