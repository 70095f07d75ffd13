import { Code, ConnectError, createContextValues, type Interceptor } from "@connectrpc/connect";
import { isAuthorized } from "../auth/access.js";
import type { AgentContext } from "../context.js";
import { handleFilesDownload, handleFilesUpload } from "../files/http.js";
import { handleFilesExport, handleFilesImport } from "../files/transfer.js";
import { ACTIVITY_PATH, handleActivity } from "../http/activity.js";
import { handleEnvs, handleHealth, handleInit } from "../http/env.js";
import { BodyError, type HttpRequest, type HttpResponse, sendError } from "../http/respond.js";
import { connectAdapter } from "./connect-adapter.js";
import { errorMapper, httpStatusOf } from "./errors.js";
import type { LazyService } from "./lazy-service.js";
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
export function createRequestHandler(ctx: AgentContext, services: AgentService[], lazyServices: LazyService[] = []) {
  const authGate: Interceptor = (next) => async (req) => {
    if (!isAuthorized(ctx.state, req.header)) {
      throw new ConnectError("missing or wrong access token (X-Access-Token)", Code.Unauthenticated);
    }
    return next(req);
  };
  // Lets a streaming handler write its hot messages to the response itself (RawMessageWriter).
  const responses = new WeakMap<HttpRequest, HttpResponse>();
  const adapter = (registered: AgentService[]) =>
    connectAdapter({
      routes: (router) => {
        for (const service of registered) service.register(router);
      },
      // Auth first, so an unauthenticated call does nothing, not even fail differently.
      interceptors: [authGate, errorMapper],
      // Uploads and large reads travel in streams; unary messages stay small.
      readMaxBytes: 16 << 20,
      contextValues: (req) => createContextValues().set(kNodeResponse, responses.get(req)),
      fallback: (_req, res) => sendError(res, 404, "no such endpoint"),
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
    // A host asking whether the sandbox is idle must not make it busy.
    if (url.pathname !== ACTIVITY_PATH) ctx.state.trackRequest(res);
    if (url.pathname === "/health") {
      handleHealth(req, res);
      return;
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
