import { Buffer } from "node:buffer";
import type http2 from "node:http2";
import net from "node:net";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ACCESS_TOKEN_HEADER } from "@tether/protocol";

/** Where an agent listens: a URL (TCP) or a unix socket path. */
export type AgentTarget = { url: string; socket?: never } | { socket: string; url?: never };

/** How to reach one agent, and who to act as there. */
export type ConnectionOptions = AgentTarget & {
  /** The agent's access token (sent as X-Access-Token). */
  accessToken?: string;
  /** Default Unix user for every call; the agent's own user when unset. */
  user?: string;
  /** Give up connecting after this long; default 10 s. */
  connectTimeoutMs?: number;
};

/**
 * HTTP/2 flow-control windows. Node's defaults (64 KiB per stream and session) stall a
 * stream every 64 KiB waiting for a WINDOW_UPDATE, capping output at a few hundred MB/s.
 */
const STREAM_WINDOW = 16 << 20;
const SESSION_WINDOW = 64 << 20;

/** An Http2SessionManager that widens each new session's connection-level window. */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.Http2Session>();

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session;
    if (session && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(SESSION_WINDOW);
    }
    return stream;
  }
}

/**
 * The HTTP/2 connections to one agent. One carries the RPC services and the plain HTTP
 * endpoints (/health, /files); a second, dialled on first use, carries only the bulk sent
 * to the agent (uploads, streamed stdin).
 *
 * Why two: Node's HTTP/2 stops reading its socket while one of its own writes is pending.
 * Two Node peers that both push more than the socket buffers hold on one connection (an
 * upload beside heavy command output) each wait for the other to read, forever. With bulk
 * flowing one way per connection, the side receiving it never has a large write pending.
 */
export class Connection {
  readonly transport: Transport;
  /** For client-streaming calls that carry bulk to the agent (StreamInput). */
  readonly upstreamTransport: Transport;
  /** Human-readable address, for error messages. */
  readonly address: string;
  readonly user: string | undefined;
  private readonly session: WideWindowSessionManager;
  private readonly upstreamSession: WideWindowSessionManager;
  private readonly accessToken: string | undefined;
  /** Raw streams (/health, /files) not yet closed, so close() can quiet them. */
  private readonly rawStreams = new Set<http2.ClientHttp2Stream>();

  constructor(readonly options: ConnectionOptions) {
    this.accessToken = options.accessToken;
    this.user = options.user;
    const socket = options.socket;
    // Over a unix socket the authority is nominal: every stream goes to createConnection.
    const baseUrl = socket !== undefined ? "http://localhost" : trimSlash(options.url);
    this.address = socket !== undefined ? `unix:${socket}` : baseUrl;
    const nodeOptions: http2.ClientSessionOptions = {
      settings: { initialWindowSize: STREAM_WINDOW, maxFrameSize: 1 << 20 },
      maxSessionMemory: 64,
      ...(socket !== undefined ? { createConnection: () => net.connect(socket) } : {}),
    };
    const newSession = () =>
      new WideWindowSessionManager(baseUrl, { connectTimeoutMs: options.connectTimeoutMs ?? 10_000 }, nodeOptions);
    this.session = newSession();
    // Dials on its first request only.
    this.upstreamSession = newSession();
    const auth: Interceptor = (next) => (req) => {
      for (const [name, value] of Object.entries(this.headers())) {
        if (!req.header.has(name)) req.header.set(name, value);
      }
      return next(req);
    };
    const newTransport = (sessionManager: WideWindowSessionManager) =>
      createConnectTransport({
        baseUrl,
        httpVersion: "2",
        sessionManager,
        useBinaryFormat: true,
        // Compressing every output chunk (connect's default offer of gzip/br) costs far more
        // CPU than it saves bytes on a local or in-datacenter link: it capped output at ~60 MB/s.
        acceptCompression: [],
        interceptors: [auth],
      });
    this.transport = newTransport(this.session);
    this.upstreamTransport = newTransport(this.upstreamSession);
  }

  /** Headers for a call: the access token, and the user as Basic auth (envd's convention). */
  headers(user: string | undefined = this.user): Record<string, string> {
    const headers: Record<string, string> = {};
    if (this.accessToken) headers[ACCESS_TOKEN_HEADER] = this.accessToken;
    if (user) headers.authorization = basicAuth(user);
    return headers;
  }

  /**
   * Opens a raw HTTP/2 stream for the plain HTTP endpoints; `upstream` puts it on the
   * connection for bulk sent to the agent (a request body of any size).
   */
  async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: { upstream?: boolean } = {},
  ): Promise<http2.ClientHttp2Stream> {
    const session = options.upstream ? this.upstreamSession : this.session;
    // No keep-alive PINGs are configured, so reads need not be reported to the manager.
    const stream = await session.request(method, path, headers, {
      endStream: method === "GET" || method === "HEAD",
    });
    this.rawStreams.add(stream);
    stream.once("close", () => this.rawStreams.delete(stream));
    return stream;
  }

  /** Closes the connection and every stream on it. */
  close(): void {
    // A stream whose body has been read to the end closes a moment later; aborting the
    // session before that errors it with nobody left listening (an uncaught exception).
    // Whoever still reads a stream hears the abort through their own listeners.
    for (const stream of this.rawStreams) stream.on("error", ignore);
    this.rawStreams.clear();
    this.session.abort();
    this.upstreamSession.abort();
  }
}

export function basicAuth(user: string): string {
  return `Basic ${Buffer.from(`${user}:`).toString("base64")}`;
}

function ignore(): void {}

function trimSlash(url: string): string {
  return url.endsWith("/") ? url.slice(0, -1) : url;
}

/** The status and headers of an HTTP/2 response, once they arrive. */
export function responseOf(
  stream: http2.ClientHttp2Stream,
): Promise<http2.IncomingHttpHeaders & { ":status"?: number }> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    stream.once("error", onError);
    stream.once("close", () => reject(new Error(`stream closed before a response (code ${stream.rstCode})`)));
    stream.once("response", (headers) => {
      stream.off("error", onError);
      resolve(headers);
    });
  });
}

/** Reads a (small) response body to the end. */
export async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}
