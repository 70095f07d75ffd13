import { Code, ConnectError, createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { isAuthorized } from "../auth/access.js";
import type { AgentContext } from "../context.js";
import { handleFilesDownload, handleFilesUpload } from "../files/http.js";
import { handleFilesExport, handleFilesImport } from "../files/transfer.js";
import { ACTIVITY_PATH, handleActivity } from "../http/activity.js";
import { handleEnvs, handleHealth, handleInit } from "../http/env.js";
import { BodyError, type HttpRequest, type HttpResponse, sendError } from "../http/respond.js";
import { errorMapper, httpStatusOf } from "./errors.js";
import { kNodeResponse } from "./raw-messages.js";
import type { AgentService } from "./service.js";

type HttpRoute = (ctx: AgentContext, req: HttpRequest, res: HttpResponse, url: URL) => void | Promise<void>;

/** envd's plain HTTP endpoints, keyed by "METHOD /path". */
const httpRoutes: Record<string, HttpRoute> = {
  "GET /envs": handleEnvs,
  "POST /init": handleInit,
  "GET /files": handleFilesDownload,
  "POST /files": handleFilesUpload,
  "POST /files/import": handleFilesImport,
  "POST /files/export": handleFilesExport,
  [`GET ${ACTIVITY_PATH}`]: handleActivity,
};

/**
 * One request handler for everything the agent serves: the HTTP endpoints, and Connect,
 * gRPC and gRPC-Web for the RPC services. Works for HTTP/1.1 and HTTP/2 requests alike.
 */
export function createRequestHandler(ctx: AgentContext, services: AgentService[]) {
  const authGate: Interceptor = (next) => async (req) => {
    if (!isAuthorized(ctx.state, req.header)) {
      throw new ConnectError("missing or wrong access token (X-Access-Token)", Code.Unauthenticated);
    }
    return next(req);
  };
  // Lets a streaming handler write its hot messages to the response itself (RawMessageWriter).
  const responses = new WeakMap<HttpRequest, HttpResponse>();
  const rpc = connectNodeAdapter({
    routes: (router) => {
      for (const service of services) service.register(router);
    },
    // Auth first, so an unauthenticated call does nothing, not even fail differently.
    interceptors: [authGate, errorMapper],
    // Uploads and large reads travel in streams; unary messages stay small.
    readMaxBytes: 16 << 20,
    contextValues: (req) => createContextValues().set(kNodeResponse, responses.get(req)),
    fallback: (_req, res) => sendError(res as HttpResponse, 404, "no such endpoint"),
  });

  return (req: HttpRequest, res: HttpResponse): void => {
    const url = new URL(req.url ?? "/", "http://agent");
    // A host asking whether the sandbox is idle must not make it busy.
    if (url.pathname !== ACTIVITY_PATH) ctx.state.trackRequest(res);
    if (url.pathname === "/health") {
      handleHealth(req, res);
      return;
    }
    const route = httpRoutes[`${req.method} ${url.pathname}`];
    if (!route) {
      responses.set(req, res);
      rpc(req, res);
      return;
    }
    if (!isAuthorized(ctx.state, req.headers)) {
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
