import type http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type { AgentLimits } from "../limits.js";

/** What the guard knows of one connection. */
interface Connection {
  socket: net.Socket;
  session?: http2.Http2Session;
  /** Requests (HTTP/2 streams) in progress. */
  requests: number;
  /** Whether a whole request head ever arrived. */
  headed: boolean;
  /** Since when no request has been in progress (or the connection opened). */
  idleSince: number;
  /** HTTP/2 stream resets the client may still send (a token bucket). */
  resets: number;
  resetsAt: number;
  /** Asked to go away already (GOAWAY sent); destroyed if it lingers. */
  closing?: number;
}

/**
 * Connection hygiene for both protocols. A connection that sends no whole request head within
 * `headersTimeoutMs` (silent, or a slowloris trickling headers) is destroyed; one with no
 * request in progress for `connectionIdleMs` is closed (HTTP/2 with a GOAWAY). A request in
 * progress keeps its connection however quiet it is: a command's output, a watch or a tunnel
 * may say nothing for hours. An HTTP/2 client that resets streams faster than
 * `resetsPerSecond` (past a burst) is told to calm down and cut off: a rapid-reset flood
 * makes the agent start work for each stream. One timer checks every connection.
 */
export class ConnectionGuard {
  private readonly connections = new Map<net.Socket, Connection>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly limits: AgentLimits,
    /**
     * Streams whose headers pass this are not counted against the reset limit (unless
     * `limits.countTrustedResets`): the token's holder may run anything in the sandbox
     * anyway, and the SDK cancels in bursts (it keeps under nghttp2's own rapid-reset
     * defence, which still holds for everyone).
     */
    private readonly trusted?: (headers: http2.IncomingHttpHeaders) => boolean,
  ) {}

  start(): void {
    const every = Math.max(50, Math.min(1000, this.limits.headersTimeoutMs / 4, this.limits.connectionIdleMs / 4));
    this.timer ??= setInterval(() => this.sweep(), every).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  opened(socket: net.Socket): void {
    const now = Date.now();
    const conn: Connection = {
      socket,
      requests: 0,
      headed: false,
      idleSince: now,
      resets: this.limits.resetBurst,
      resetsAt: now,
    };
    this.connections.set(socket, conn);
    socket.once("close", () => this.connections.delete(socket));
  }

  http1(socket: net.Socket, res: http.ServerResponse): void {
    const conn = this.connections.get(socket);
    if (!conn) return;
    this.began(conn);
    res.once("close", () => this.ended(conn));
  }

  http2(socket: net.Socket, session: http2.Http2Session): void {
    const conn = this.connections.get(socket);
    if (!conn) return;
    conn.session = session;
    session.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      this.began(conn);
      const counted = this.limits.countTrustedResets || !this.trusted?.(headers);
      stream.once("close", () => {
        this.ended(conn);
        // Reset by the client (the agent's own resets after an answer are NO_ERROR).
        if (counted && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) this.reset(conn);
      });
    });
    // However the session ends (GOAWAY either way, an error, nghttp2's own flood defence),
    // its socket goes with it: a session that is gone must not keep its descriptor.
    session.once("close", () => socket.destroy());
    session.on("error", () => socket.destroy());
  }

  private began(conn: Connection): void {
    conn.headed = true;
    conn.requests++;
  }

  private ended(conn: Connection): void {
    if (--conn.requests === 0) conn.idleSince = Date.now();
  }

  private reset(conn: Connection): void {
    const now = Date.now();
    const refill = ((now - conn.resetsAt) / 1000) * this.limits.resetsPerSecond;
    conn.resets = Math.min(this.limits.resetBurst, conn.resets + refill);
    conn.resetsAt = now;
    if (--conn.resets >= 0 || conn.socket.destroyed) return;
    // Not session.destroy(): that resets each open stream from the agent's side, and Node's
    // HTTP/2 (20.x) then spins writing empty DATA frames for a stream it has already let go
    // of: the event loop stops and memory grows by GBs a minute (a client cancelling 500
    // attached commands, cut after 50 resets, was enough). A GOAWAY, then the socket
    // destroyed once it went out, ends the streams as a dropped connection does.
    const session = conn.session;
    if (session && !session.destroyed && !session.closed) {
      // Names the last stream the agent took up, so the client knows which calls it may resend.
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      setImmediate(() => conn.socket.destroy());
    } else conn.socket.destroy();
    conn.closing = Date.now();
  }

  private sweep(): void {
    const now = Date.now();
    for (const conn of this.connections.values()) {
      if (conn.closing !== undefined) {
        // A GOAWAY leaves the client time to finish; one that stays is let go of.
        if (now - conn.closing > this.limits.headersTimeoutMs) conn.socket.destroy();
      } else if (!conn.headed) {
        if (now - conn.idleSince > this.limits.headersTimeoutMs) conn.socket.destroy();
      } else if (conn.requests === 0 && now - conn.idleSince > this.limits.connectionIdleMs) {
        conn.closing = now;
        if (conn.session) conn.session.close();
        else conn.socket.destroy();
      }
    }
  }
}
