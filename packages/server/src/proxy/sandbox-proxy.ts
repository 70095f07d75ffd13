import { timingSafeEqual } from "node:crypto";
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { Sandboxes, SandboxInfo } from "@tether/host";
import type { Agent } from "@tether/sdk";
import type { Logger } from "pino";
import { factsOf } from "../api/views.js";
import { AGENT_PORT, type ProxyTarget, validTarget } from "./route.js";
import { checkSignature } from "./signed-url.js";

/** Headers that belong to one hop, plus the routing headers the sandbox has no use for. */
const HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "e2b-sandbox-id",
  "e2b-sandbox-port",
]);

/** How long a looked-up sandbox is trusted before it is looked up again (each lookup asks the engine). */
const LOOKUP_TTL_MS = 1000;

/**
 * HTTP/2 flow-control windows of the proxy's sessions (from clients, to agents). A stream's
 * window is what its sender may have in flight that the proxy has not passed on: the proxy
 * reads a stream only as fast as the other side takes it, so each proxied stream may hold
 * up to this much in the server's memory, each way. The SDK's 16 MiB (its connection.ts)
 * cost 23 MB more peak RSS for one upload beside one download; 1 MiB cost none measurable
 * and still lets a client 20 ms away send 50 MB/s a stream. The session's window is wider
 * (Node's 64 KiB for the whole connection would stall several streams at once).
 */
export const HTTP2_STREAM_WINDOW = 1 << 20;
export const HTTP2_SESSION_WINDOW = 4 << 20;

/** Why a request could not reach its sandbox: E2B's proxy answers 502 with this body, which the SDK reads as "not running". */
class Unreachable extends Error {
  constructor(
    readonly sandboxId: string,
    message: string,
  ) {
    super(message);
  }
}

/** The sandbox's ports are not public and the request lacks its traffic token. */
class TrafficRefused extends Error {
  readonly body = JSON.stringify({ code: 403, message: "this sandbox's ports need its traffic access token" });
}

function forwardHeaders(headers: IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    // HTTP/2's pseudo-headers (:method, :path, ...) are its request line, not headers to forward.
    if (value !== undefined && !HOP.has(name) && !name.startsWith(":")) out[name] = value;
  }
  return out;
}

function badGatewayBody(err: Unreachable): string {
  return JSON.stringify({ sandboxId: err.sandboxId, message: err.message, code: 502 });
}

/**
 * The sandbox proxy: requests for `<port>` of a sandbox, on the API's own port. Port
 * 49983 goes to the agent's unix socket; any other port to that port inside the
 * sandbox (straight over TCP where the sandbox has a network, else through the agent's
 * tunnel). Bodies stream both ways with backpressure and are never buffered whole, so a
 * 2 GiB upload costs the server a few socket buffers.
 */
export class SandboxProxy {
  private readonly lookups = new Map<string, { at: number; info: Promise<SandboxInfo> }>();
  private readonly agents = new Map<string, Promise<Agent>>();
  /** Connections to agents' sockets are kept between requests: a new one per request costs more than the hop itself. */
  private readonly pool = new http.Agent({ keepAlive: true, maxFreeSockets: 64 });
  /**
   * HTTP/2 sessions to agents' sockets, for clients that speak HTTP/2 to the proxy
   * (@tether/sdk): their tunnels are full-duplex streams the agent serves over HTTP/2 only,
   * and stream resets (cancels, REFUSED_STREAM) pass through as they are. Per sandbox, one
   * for each client session that reaches it, never shared: the SDK keeps bulk going one way
   * per connection (uploads on a second one), because two Node peers pushing both ways on
   * one connection can each wait for the other to read, for ever; one agent session for
   * both of a client's would bring that back (an upload beside a download stalled for good).
   */
  private readonly h2Sessions = new Map<string, Map<http2.Http2Session, http2.ClientHttp2Session>>();

  constructor(
    private readonly sandboxes: Sandboxes,
    private readonly log: Logger,
  ) {}

  /** Forwards one HTTP request; the response streams back as it comes. */
  handle(req: IncomingMessage, res: ServerResponse, target: ProxyTarget): void {
    this.forward(req, res, target).catch((err) => this.fail(res, target, err));
  }

  /** Forwards an upgrade (WebSocket): the request head, then bytes both ways. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: ProxyTarget): void {
    socket.on("error", () => socket.destroy());
    (async () => {
      const upstream = await this.open(target, req);
      upstream.on("error", () => socket.destroy());
      socket.on("close", () => upstream.destroy());
      upstream.on("close", () => socket.destroy());
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i].toLowerCase();
        if (name === "e2b-sandbox-id" || name === "e2b-sandbox-port") continue;
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
    })().catch((err) => {
      const [status, body] =
        err instanceof TrafficRefused
          ? ["403 Forbidden", err.body]
          : ["502 Bad Gateway", badGatewayBody(this.unreachable(target, err))];
      socket.end(
        `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
  }

  /** Takes what the API has just learnt of a sandbox (created, resumed): its first request needs no look-up. */
  remember(info: SandboxInfo): void {
    if (info.state === "running" && info.endpoint) {
      this.lookups.set(info.id, { at: Date.now(), info: Promise.resolve(info) });
    }
  }

  /** Drops what is cached of a sandbox (it was killed, paused or stopped). */
  forget(id: string): void {
    this.lookups.delete(id);
    const agent = this.agents.get(id);
    this.agents.delete(id);
    agent?.then((a) => a.close()).catch(() => {});
    // Cut, as the HTTP/1 streams are: the agent is going away, or the server is.
    for (const session of this.h2Sessions.get(id)?.values() ?? []) session.destroy();
    this.h2Sessions.delete(id);
  }

  /** Closes the agent connections the proxy holds (tunnels, HTTP/2 sessions). */
  close(): void {
    for (const id of new Set([...this.agents.keys(), ...this.h2Sessions.keys()])) this.forget(id);
    this.pool.destroy();
  }

  private async forward(req: IncomingMessage, res: ServerResponse, target: ProxyTarget): Promise<void> {
    const info = await this.running(target);
    if (!this.trafficAllowed(req, info, target)) {
      const { body } = new TrafficRefused();
      res.writeHead(403, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const options: http.RequestOptions = {
      method: req.method,
      path: req.url,
      headers: forwardHeaders(req.headers),
    };
    if (target.port === AGENT_PORT) {
      options.socketPath = info.endpoint?.socket;
      options.agent = this.pool;
      const token = info.endpoint?.accessToken;
      // A signed URL stands for the token (see checkSignature); a bad one gets the agent's own 401.
      if (
        token &&
        req.headers["x-access-token"] === undefined &&
        checkSignature(req.method ?? "GET", req.url ?? "/", token) === "valid"
      ) {
        (options.headers as http.OutgoingHttpHeaders)["x-access-token"] = token;
      }
      if (req.httpVersionMajor >= 2) {
        this.forwardH2(req, res, target, info, options.headers as http.OutgoingHttpHeaders);
        return;
      }
    } else {
      const direct = this.directAddress(info);
      if (direct) {
        options.host = direct;
        options.port = target.port;
      } else {
        const tunnel = await this.tunnel(info, target.port);
        options.createConnection = () => tunnel as unknown as net.Socket;
      }
    }
    const upstream = http.request(options);
    upstream.on("response", (answer) => {
      const headers = forwardHeaders(answer.headers);
      // HTTP/2 has no status message (Node warns when given one).
      if (req.httpVersionMajor >= 2) res.writeHead(answer.statusCode ?? 502, headers);
      else res.writeHead(answer.statusCode ?? 502, answer.statusMessage, headers);
      answer.pipe(res);
      answer.on("error", () => res.destroy());
    });
    upstream.on("error", (err) => this.fail(res, target, err));
    // The client went away: stop the sandbox side too (a long download, a stream).
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  /** An HTTP/2 request to the agent, forwarded on an HTTP/2 session to its socket. */
  private forwardH2(
    req: IncomingMessage,
    res: ServerResponse,
    target: ProxyTarget,
    info: SandboxInfo,
    headers: http.OutgoingHttpHeaders,
  ): void {
    const client = (req as unknown as http2.Http2ServerRequest).stream.session as http2.Http2Session;
    const upstream = this.agentSession(info, client).request({
      ...headers,
      ":method": req.method ?? "GET",
      ":path": req.url ?? "/",
    });
    upstream.on("response", (answer) => {
      res.writeHead(Number(answer[":status"] ?? 502), forwardHeaders(answer));
      upstream.pipe(res);
    });
    upstream.on("trailers", (trailers) => res.addTrailers(forwardHeaders(trailers)));
    upstream.on("error", (err) => this.fail(res, target, err));
    // A reset passes through both ways: the client's cancel to the agent, the agent's
    // reset (REFUSED_STREAM says it never ran the request) to the client.
    upstream.on("close", () => {
      const code = upstream.rstCode ?? http2.constants.NGHTTP2_NO_ERROR;
      if (code !== http2.constants.NGHTTP2_NO_ERROR && !res.writableFinished) {
        (res as unknown as http2.Http2ServerResponse).stream.close(code);
      }
    });
    res.on("close", () => {
      if (!res.writableFinished && !upstream.closed) upstream.close(http2.constants.NGHTTP2_CANCEL);
    });
    req.pipe(upstream);
  }

  /** The session to the sandbox's agent that carries this client session's streams. */
  private agentSession(info: SandboxInfo, client: http2.Http2Session): http2.ClientHttp2Session {
    let sessions = this.h2Sessions.get(info.id);
    const kept = sessions?.get(client);
    if (kept && !kept.closed && !kept.destroyed) return kept;
    if (!sessions) {
      sessions = new Map();
      this.h2Sessions.set(info.id, sessions);
    }
    const socket = info.endpoint?.socket ?? "";
    const session = http2.connect("http://localhost", {
      createConnection: () => net.connect(socket),
      settings: { initialWindowSize: HTTP2_STREAM_WINDOW },
    });
    session.once("connect", () => session.setLocalWindowSize(HTTP2_SESSION_WINDOW));
    // Errors reach the session's streams; the session itself is dropped and dialled again.
    session.on("error", () => {});
    const closeWithClient = () => session.close();
    client.once("close", closeWithClient);
    session.once("close", () => {
      client.off("close", closeWithClient);
      const current = this.h2Sessions.get(info.id);
      if (current?.get(client) !== session) return;
      current.delete(client);
      if (current.size === 0) this.h2Sessions.delete(info.id);
    });
    sessions.set(client, session);
    return session;
  }

  /** A byte stream to the target port, for upgrades. */
  private async open(target: ProxyTarget, req: IncomingMessage): Promise<Duplex> {
    const info = await this.running(target);
    if (!this.trafficAllowed(req, info, target)) throw new TrafficRefused();
    if (target.port !== AGENT_PORT) {
      const direct = this.directAddress(info);
      if (!direct) return this.tunnel(info, target.port);
      return this.connected(net.connect(target.port, direct));
    }
    return this.connected(net.connect(info.endpoint?.socket ?? ""));
  }

  private connected(socket: net.Socket): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(socket);
      });
      socket.once("error", reject);
    });
  }

  /**
   * Ports other than the agent's are public unless the sandbox was made with
   * `allowPublicTraffic: false`; then the request must carry its traffic token. (The
   * agent's port has its own token.)
   */
  private trafficAllowed(req: IncomingMessage, info: SandboxInfo, target: ProxyTarget): boolean {
    if (target.port === AGENT_PORT) return true;
    const token = factsOf(info).trafficAccessToken;
    if (!token) return true;
    const given = Buffer.from(String(req.headers["e2b-traffic-access-token"] ?? ""));
    const wanted = Buffer.from(token);
    return given.length === wanted.length && timingSafeEqual(given, wanted);
  }

  /** The sandbox's address when the host can route to it (a bridge network), else undefined. */
  private directAddress(info: SandboxInfo): string | undefined {
    const url = info.endpoint?.url;
    return url ? new URL(url).hostname : undefined;
  }

  private async tunnel(info: SandboxInfo, port: number): Promise<Duplex> {
    let agent = this.agents.get(info.id);
    if (!agent) {
      agent = this.sandboxes.connect(info.id);
      this.agents.set(info.id, agent);
    }
    try {
      return await (await agent).tunnel(port);
    } catch (err) {
      // A broken connection is not kept for the next request.
      if (!(await agent.then(() => true).catch(() => false))) this.agents.delete(info.id);
      throw err;
    }
  }

  /** The sandbox, if it is running and has an agent endpoint; Unreachable otherwise. */
  private async running(target: ProxyTarget): Promise<SandboxInfo> {
    if (!validTarget(target)) throw new Unreachable(target.sandboxId, "no such sandbox or port");
    const now = Date.now();
    let cached = this.lookups.get(target.sandboxId);
    if (!cached || now - cached.at > LOOKUP_TTL_MS) {
      cached = { at: now, info: this.sandboxes.get(target.sandboxId) };
      this.lookups.set(target.sandboxId, cached);
      cached.info.catch(() => this.lookups.delete(target.sandboxId));
    }
    const info = await cached.info.catch(() => {
      throw new Unreachable(target.sandboxId, `sandbox ${target.sandboxId} not found`);
    });
    if (info.state !== "running" || !info.endpoint) {
      this.forget(info.id);
      throw new Unreachable(target.sandboxId, `sandbox ${target.sandboxId} is not running (${info.state})`);
    }
    return info;
  }

  private unreachable(target: ProxyTarget, err: unknown): Unreachable {
    if (err instanceof Unreachable) return err;
    return new Unreachable(
      target.sandboxId,
      `port ${target.port} of sandbox ${target.sandboxId} is not reachable: ${(err as Error).message}`,
    );
  }

  private fail(res: ServerResponse, target: ProxyTarget, err: unknown): void {
    const problem = this.unreachable(target, err);
    this.log.debug({ sandbox: target.sandboxId, port: target.port, err: problem.message }, "proxy: unreachable");
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = badGatewayBody(problem);
    res.writeHead(502, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }
}
