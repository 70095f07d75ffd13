import { AsyncLocalStorage } from "node:async_hooks";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import net from "node:net";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ACCESS_TOKEN_HEADER } from "@tether/protocol";
import { AgentProtocolError } from "./errors.js";

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
  /** Sent on every request: the routing headers of a proxy in front of the agent (tether serve's). */
  headers?: Record<string, string>;
};

/**
 * HTTP/2 flow-control windows. Node's defaults (64 KiB per stream and session) stall a
 * stream every 64 KiB waiting for a WINDOW_UPDATE, capping output at a few hundred MB/s.
 */
const STREAM_WINDOW = 16 << 20;
const SESSION_WINDOW = 64 << 20;

/** The GOAWAY a session received: streams above `lastStreamId` never reached the agent. */
interface GoAway {
  code: number;
  lastStreamId: number;
}

/** The raw streams a unary call opened, found through the call's async context. */
const callStreams = new AsyncLocalStorage<http2.ClientHttp2Stream[]>();
/** Each stream's session (a destroyed stream forgets it), and each session's GOAWAY. */
const sessions = new WeakMap<http2.ClientHttp2Stream, http2.Http2Session>();
const goaways = new WeakMap<http2.Http2Session, GoAway>();

/**
 * Unary calls the agent may run twice with the same outcome: retried when the connection
 * died under them even if the agent may have seen them. Any other call is retried only when
 * it provably never reached the agent.
 */
const IDEMPOTENT_METHODS = new Set([
  "/process.Process/List",
  "/process.Process/Update",
  "/filesystem.Filesystem/Stat",
  "/filesystem.Filesystem/ListDir",
  "/filesystem.Filesystem/Remove",
  "/tether.v1.Exec/List",
  "/tether.v1.Ports/List",
]);

/**
 * The stream resets (cancels) a session may send in a burst, and how many more per second,
 * before new calls move to a new session: below nghttp2's limit in Node's HTTP/2 server
 * (1,000, then 33 a second), past which it closes the session.
 */
const RESET_BURST = 500;
const RESETS_PER_SECOND = 30;

/** How often a call that never reached the agent is sent again, on a new session each time. */
export const MAX_ATTEMPTS = 3;

/** The wait before sending a call again, doubled each attempt up to the cap. */
const RETRY_DELAY_MS = 50;
const MAX_RETRY_DELAY_MS = 1000;

/**
 * Waits before attempt `attempt + 1` of a call whose session died: an agent that closed it
 * with ENHANCE_YOUR_CALM asked for a pause, and a new session dialled at once may meet the
 * same fate. Resolves early when the call is cancelled (the caller then sees it aborted).
 */
export function retryDelay(attempt: number, signal?: AbortSignal): Promise<void> {
  const ms = Math.min(MAX_RETRY_DELAY_MS, RETRY_DELAY_MS * 2 ** (attempt - 1));
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * An Http2SessionManager that widens each new session's connection-level window and
 * remembers the GOAWAY each session received.
 *
 * A session can die under a busy client: Node's HTTP/2 server closes one whose client reset
 * about a thousand streams in a burst (its rapid-reset defence; a cancelled call is a reset),
 * with GOAWAY INTERNAL_ERROR. The manager then dials a new session for the next call; the
 * GOAWAY tells which calls in flight the agent never saw, so they can be sent again.
 */
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
      session.once("goaway", (code, lastStreamId) => goaways.set(session, { code, lastStreamId }));
    }
    if (session) sessions.set(stream, session);
    callStreams.getStore()?.push(stream);
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
  /** Each session's reset budget: a token bucket, refilled at RESETS_PER_SECOND. */
  private readonly resetBudgets = new WeakMap<http2.Http2Session, { tokens: number; at: number }>();
  /** Sessions closed to new calls because they spent their reset budget, still finishing calls. */
  private readonly retired = new Set<http2.Http2Session>();
  /** Resets a retired session had no budget for yet, sent as its budget refills (see cancel). */
  private readonly deferredResets = new Map<http2.Http2Session, { streams: http2.ClientHttp2Stream[]; next: number }>();
  private readonly waitingResets = new WeakSet<http2.ClientHttp2Stream>();

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
    // A unary call that failed because its session died is sent again on a new one when the
    // agent never saw it (or seeing it twice does no harm). Streaming calls are not retried
    // here: serverStream retries those that never reached the agent.
    const retry: Interceptor = (next) => async (req) => {
      if (req.stream) return next(req);
      for (let attempt = 1; ; attempt++) {
        const streams: http2.ClientHttp2Stream[] = [];
        try {
          return await callStreams.run(streams, () => next(req));
        } catch (err) {
          const stream = streams.at(-1);
          const again =
            stream !== undefined &&
            attempt < MAX_ATTEMPTS &&
            !req.signal.aborted &&
            (this.neverReachedAgent(stream) ||
              (IDEMPOTENT_METHODS.has(`/${req.service.typeName}/${req.method.name}`) &&
                this.sessionLost(stream) !== undefined));
          if (!again) throw err;
        }
        await retryDelay(attempt, req.signal);
      }
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
        interceptors: [auth, retry],
      });
    this.transport = newTransport(this.session);
    this.upstreamTransport = newTransport(this.upstreamSession);
  }

  /** Headers for a call: the access token, and the user as Basic auth (envd's convention). */
  headers(user: string | undefined = this.user): Record<string, string> {
    const headers: Record<string, string> = { ...this.options.headers };
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
    const stream = await session.request(
      method,
      path,
      { ...this.options.headers, ...headers },
      {
        endStream: method === "GET" || method === "HEAD",
      },
    );
    this.rawStreams.add(stream);
    stream.once("close", () => this.rawStreams.delete(stream));
    return stream;
  }

  /**
   * Cancels a call whose response is no longer wanted (an HTTP/2 reset). When its session
   * has sent a burst of resets, the session takes no new calls: it finishes the calls on it
   * while new ones go to a new session. Resets past the burst wait, paced at the refill
   * rate, so the session stays under the agent's rapid-reset limit: sending thousands at
   * once made Node's HTTP/2 server close it (failing the calls in flight on it) and kept
   * the agent busy long enough that a call sent right after, on a new session, timed out.
   * The caller has stopped reading (see serverStream), so a waiting stream's data stays
   * within its flow-control window.
   */
  cancel(stream: http2.ClientHttp2Stream): void {
    // A closed stream sends no reset: nothing to cancel, nothing to count.
    if (stream.closed || this.waitingResets.has(stream)) return;
    const session = sessions.get(stream);
    if (!session || session.destroyed || this.takeReset(session)) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    if (!this.retired.has(session)) {
      this.retired.add(session);
      session.once("close", () => this.retired.delete(session));
      session.close();
    }
    this.deferReset(session, stream);
  }

  /** Spends one of the session's resets if it has one left (a token bucket). */
  private takeReset(session: http2.Http2Session): boolean {
    const now = performance.now();
    const budget = this.resetBudgets.get(session) ?? { tokens: RESET_BURST, at: now };
    budget.tokens = Math.min(RESET_BURST, budget.tokens + ((now - budget.at) / 1000) * RESETS_PER_SECOND);
    budget.at = now;
    this.resetBudgets.set(session, budget);
    if (budget.tokens < 1) return false;
    budget.tokens -= 1;
    return true;
  }

  /** Queues a reset the session has no budget for; a timer sends them as the budget refills. */
  private deferReset(session: http2.Http2Session, stream: http2.ClientHttp2Stream): void {
    this.waitingResets.add(stream);
    const queued = this.deferredResets.get(session);
    if (queued) {
      queued.streams.push(stream);
      return;
    }
    // An index into the array, not shift(): thousands of waiting resets cost linear time.
    const queue = { streams: [stream], next: 0 };
    this.deferredResets.set(session, queue);
    const timer = setInterval(() => {
      for (; queue.next < queue.streams.length; queue.next++) {
        const next = queue.streams[queue.next];
        if (!next.closed && !this.takeReset(session)) return;
        next.close(http2.constants.NGHTTP2_CANCEL);
        this.waitingResets.delete(next);
      }
      stop();
    }, 1000 / RESETS_PER_SECOND);
    const stop = () => {
      clearInterval(timer);
      this.deferredResets.delete(session);
    };
    session.once("close", stop);
  }

  /**
   * True when a failed stream provably never reached the agent, so sending the request
   * again cannot run it twice: it was never sent, the agent refused it, or the agent's
   * GOAWAY names an earlier stream as the last it processed.
   */
  neverReachedAgent(stream: http2.ClientHttp2Stream): boolean {
    const session = sessions.get(stream);
    if (stream.id === undefined) return session?.destroyed ?? false;
    if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) return true;
    const goaway = session && goaways.get(session);
    return goaway !== undefined && stream.id > goaway.lastStreamId;
  }

  /**
   * Why the stream's session died, when it did (a GOAWAY with an error code, or the session
   * destroyed): in-flight calls on it then fail with ConnectionLostError, not as a
   * call-level failure.
   */
  sessionLost(stream: http2.ClientHttp2Stream): string | undefined {
    const session = sessions.get(stream);
    const goaway = session && goaways.get(session);
    if (goaway && goaway.code !== http2.constants.NGHTTP2_NO_ERROR) {
      return `the agent closed the connection with HTTP/2 GOAWAY ${h2CodeName(goaway.code)}`;
    }
    if (session?.destroyed) return "the connection to the agent closed";
    return undefined;
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
    for (const session of this.retired) session.destroy();
    this.retired.clear();
  }
}

export function basicAuth(user: string): string {
  return `Basic ${Buffer.from(`${user}:`).toString("base64")}`;
}

function ignore(): void {}

/** An HTTP/2 error code's name (RFC 9113, section 7), with its number. */
function h2CodeName(code: number): string {
  const names = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
  ];
  return `${names[code] ?? "code"} (${code})`;
}

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
    stream.once("close", () =>
      reject(new AgentProtocolError(`stream closed before a response (code ${stream.rstCode})`)),
    );
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
