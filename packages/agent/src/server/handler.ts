import http2 from "node:http2";
import { Code, ConnectError, createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { ACCESS_TOKEN_HEADER, TUNNEL_PATH, TUNNEL_WRITE_PATH } from "@tether/protocol/constants";
import { isAuthorized } from "../auth/access.js";
import { AuthAudit } from "../auth/audit.js";
import type { AgentContext } from "../context.js";
import { handleFilesDownload, handleFilesUpload } from "../files/http.js";
import { handleFilesExport, handleFilesImport } from "../files/transfer.js";
import { ACTIVITY_PATH, handleActivity } from "../http/activity.js";
import { handleEnvs, handleHealth, handleInit } from "../http/env.js";
import { BodyError, type HttpRequest, type HttpResponse, sendError } from "../http/respond.js";
import { errorMapper, httpStatusOf } from "../rpc/errors.js";
import { kNodeResponse } from "../rpc/raw-messages.js";
import type { AgentService } from "../rpc/service.js";
import { handleTunnelOpen, handleTunnelWrite } from "../tunnel/http.js";
import { connectAdapter } from "./connect-adapter.js";
import type { LazyService } from "./lazy-service.js";

/** Whether the request carried the access token, checked once before anything reads its body. */
const kAuthorized = createContextKey<boolean>(false, { description: "the call carries the access token" });

/**
 * Requests without the token one HTTP/2 session may make before it is cut off: a client with
 * the token never needs one, and each costs the agent a handler's work (HTTP/1.1 closes the
 * connection after every refusal already).
 */
const MAX_REFUSED_PER_SESSION = 100;

type HttpRoute = (ctx: AgentContext, req: HttpRequest, res: HttpResponse, url: URL) => void | Promise<void>;

/** envd's plain HTTP endpoints and Tether's own (activity, raw tunnels), keyed by "METHOD /path". */
const httpRoutes: Record<string, HttpRoute> = {
  "GET /envs": handleEnvs,
  "POST /init": handleInit,
  "GET /files": handleFilesDownload,
  "POST /files": handleFilesUpload,
  "POST /files/import": handleFilesImport,
  "POST /files/export": handleFilesExport,
  [`GET ${ACTIVITY_PATH}`]: handleActivity,
  [`POST ${TUNNEL_PATH}`]: handleTunnelOpen,
  [`POST ${TUNNEL_WRITE_PATH}`]: handleTunnelWrite,
};

/**
 * One request handler for everything the agent serves: the HTTP endpoints, and Connect,
 * gRPC and gRPC-Web for the RPC services. Works for HTTP/1.1 and HTTP/2 requests alike.
 */
export function createRequestHandler(ctx: AgentContext, services: AgentService[], lazyServices: LazyService[] = []) {
  const audit = new AuthAudit(ctx.log);
  // connect-es runs the gate before it reads, decompresses or parses a message, so an
  // unauthenticated call costs no more than its headers, whatever body it sends.
  const requestGate = (context: HandlerContext) => {
    if (!context.values.get(kAuthorized)) {
      throw new ConnectError("missing or wrong access token (X-Access-Token)", Code.Unauthenticated);
    }
    context.signal.addEventListener("abort", () => asInvalidArgument(context.signal.reason), { once: true });
  };
  // Lets a streaming handler write its hot messages to the response itself (RawMessageWriter).
  const responses = new WeakMap<HttpRequest, HttpResponse>();
  const authorized = new WeakSet<HttpRequest>();
  const refusedBySession = new WeakMap<http2.Http2Session, number>();
  const adapter = (registered: AgentService[]) =>
    connectAdapter({
      routes: (router) => {
        for (const service of registered) service.register(router);
      },
      // Auth first, so an unauthenticated call does nothing, not even fail differently.
      requestGate,
      interceptors: [errorMapper],
      // Uploads and large reads travel in streams; unary messages stay small.
      readMaxBytes: 16 << 20,
      // Unknown fields are of no use to the agent, and kept they cost a few hundred bytes
      // each: 16 MiB of one-byte fields took 1.5 GB.
      binaryOptions: { readUnknownFields: false },
      contextValues: (req) =>
        createContextValues().set(kNodeResponse, responses.get(req)).set(kAuthorized, authorized.has(req)),
      fallback: (_req, res) => sendError(res as HttpResponse, 404, "no such endpoint"),
      onError: (err, rpc) => ctx.log.error({ err, rpc }, "an RPC handler failed"),
    });
  const rpc = adapter(services);
  // Each lazy service gets its own adapter, made once its first call has loaded it
  // (LazyService remembers the load, and forgets a failed one).
  const lazyByName = new Map(lazyServices.map((service) => [service.typeName, service]));
  const lazyAdapters = new WeakMap<AgentService, ReturnType<typeof adapter>>();
  function lazyRpc(pathname: string): Promise<ReturnType<typeof adapter>> | undefined {
    const service = lazyByName.get(pathname.split("/")[1] ?? "");
    return service?.load().then((loaded) => {
      let made = lazyAdapters.get(loaded);
      if (!made) {
        made = adapter([loaded]);
        lazyAdapters.set(loaded, made);
      }
      return made;
    });
  }

  return (req: HttpRequest, res: HttpResponse): void => {
    const url = new URL(req.url ?? "/", "http://agent");
    // Liveness needs no token and is no work: a sandbox that pings itself stays idle.
    if (url.pathname === "/health") {
      handleHealth(req, res);
      return;
    }
    if (isAuthorized(ctx.state, req.headers)) {
      authorized.add(req);
      // A host asking whether the sandbox is idle must not make it busy.
      if (url.pathname !== ACTIVITY_PATH) ctx.state.trackRequest(res);
    } else {
      audit.refused({
        method: req.method,
        path: url.pathname,
        remote: req.socket?.remoteAddress,
        tokenGiven: req.headers[ACCESS_TOKEN_HEADER] !== undefined,
      });
      const session = "stream" in req ? req.stream.session : undefined;
      if (session) {
        const refused = (refusedBySession.get(session) ?? 0) + 1;
        refusedBySession.set(session, refused);
        if (refused > MAX_REFUSED_PER_SESSION) {
          session.destroy(new Error("too many requests without the token"), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
          return;
        }
      }
      dropBodyAfterAnswer(req, res);
    }
    const route = httpRoutes[`${req.method} ${url.pathname}`];
    if (!route) {
      responses.set(req, res);
      const lazy = lazyRpc(url.pathname);
      if (!lazy) {
        rpc(req, res);
        return;
      }
      lazy.then(
        (handle) => handle(req, res),
        (err: unknown) => {
          ctx.log.error({ err, path: url.pathname }, "loading a service failed");
          sendError(res, 500, `the service could not be loaded: ${err instanceof Error ? err.message : String(err)}`);
        },
      );
      return;
    }
    if (!authorized.has(req)) {
      sendError(res, 401, "missing or wrong access token (X-Access-Token)");
      return;
    }
    Promise.resolve()
      .then(() => route(ctx, req, res, url))
      .catch((err: unknown) => {
        const status = err instanceof BodyError ? err.status : httpStatusOf(err);
        if (status >= 500) ctx.log.error({ err, path: url.pathname }, "request failed");
        sendError(res, status, err instanceof Error ? err.message : String(err));
      });
  };
}

/**
 * Once a refused request is answered, the rest of its body is not waited for: HTTP/2 resets
 * the stream (NO_ERROR, the server's way to say "stop sending"), HTTP/1.1 closes the connection.
 */
function dropBodyAfterAnswer(req: HttpRequest, res: HttpResponse): void {
  if (!("stream" in req)) res.setHeader("connection", "close");
  res.once("finish", () => {
    if (req.complete) return;
    if ("stream" in req) req.stream.close(http2.constants.NGHTTP2_NO_ERROR);
    else req.socket.destroySoon();
  });
}

/**
 * connect-es answers a message it cannot parse with `internal`, as if the agent had failed:
 * it is the client's message that is wrong. The gate sees the error as the call's abort
 * reason before connect-es writes it, and gives it the code it deserves.
 */
function asInvalidArgument(reason: unknown): void {
  if (
    reason instanceof ConnectError &&
    reason.code === Code.Internal &&
    reason.rawMessage.startsWith("parse binary:")
  ) {
    (reason as { code: Code }).code = Code.InvalidArgument;
  }
}
