import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import net from "node:net";
import fastifySwagger from "@fastify/swagger";
import { type ExpiryLoop, Sandboxes, SandboxNotFoundError, startExpiryLoop } from "@tether/host";
import type Database from "better-sqlite3";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
} from "fastify-type-provider-zod";
import { type Logger, pino } from "pino";
import { e2bRoutes } from "./api/routes.js";
import { TeamSandboxes } from "./api/team-sandboxes.js";
import { ApiKeys } from "./auth/keys.js";
import { type TeamLimitOptions, TeamLimits } from "./auth/limits.js";
import { dashboardAssets, dashboardAssetsDir, isDashboardAsset } from "./dashboard/assets.js";
import { SandboxWatch } from "./dashboard/events.js";
import { dashboardRoutes } from "./dashboard/routes.js";
import { dashboardTemplates } from "./dashboard/templates.js";
import { Terminals } from "./dashboard/terminal.js";
import { ApiError, UnauthorizedError } from "./errors.js";
import { ServerMetrics } from "./metrics.js";
import { acceptHttp2, type Http2Clients } from "./proxy/http2.js";
import { proxyTarget } from "./proxy/route.js";
import { SandboxProxy } from "./proxy/sandbox-proxy.js";
import { openServerDatabase } from "./store/database.js";
import { Templates } from "./templates/templates.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The team of the request's API key. */
    team: string;
  }
}

export interface ServerOptions {
  /** Default 127.0.0.1: nothing listens beyond loopback unless asked. */
  host?: string;
  /** Default 3000; 0 picks a free port. */
  port?: number;
  /** Sandbox host names are `<port>-<id>.<domain>`; without it only header routing reaches sandboxes. */
  domain?: string;
  /** PEM files; both or neither. */
  tlsCert?: string;
  tlsKey?: string;
  /** The host's sandboxes; default a Sandboxes over `home` (TETHER_HOME). Not closed by `close`. */
  sandboxes?: Sandboxes;
  home?: string;
  /** The image the e2b SDK's default template `base` means, when no template is named base. */
  baseImage?: string;
  limits?: TeamLimitOptions;
  /** Default: pino at info on stderr. */
  logger?: Logger;
  /** How often expiry runs; default 2 s (E2B timeouts are seconds). */
  expiryIntervalMs?: number;
}

/** A listening server. */
export interface RunningServer {
  /** The API's base URL (also the sandbox proxy's). */
  url: string;
  port: number;
  keys: ApiKeys;
  templates: Templates;
  /** Stops listening and lets requests finish; sandboxes keep running (a restarted server adopts them). */
  close(): Promise<void>;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || (net.isIPv4(host) && host.startsWith("127."));
}

/**
 * `tether serve`: E2B's control plane and the sandbox proxy on one port, over the same
 * registry and backends as the CLI. Reconciles at start, runs expiry while it runs.
 */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? "127.0.0.1";
  const log = options.logger ?? pino({ level: process.env.TETHER_LOG_LEVEL ?? "info" }, pino.destination(2));
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new ApiError(400, "--tls-cert and --tls-key go together");
  }
  const tls = options.tlsCert !== undefined && options.tlsKey !== undefined;
  if (!tls && !isLoopback(host)) {
    process.stderr.write(
      `tether serve: listening on ${host} without TLS: API keys and agent tokens travel in clear (use --tls-cert/--tls-key)\n`,
    );
  }
  const sandboxes = options.sandboxes ?? new Sandboxes({ home: options.home });
  const db: Database.Database = openServerDatabase(sandboxes.home);
  const keys = new ApiKeys(db);
  const templates = new Templates(db);
  const limits = new TeamLimits(options.limits);
  const metrics = new ServerMetrics(sandboxes, limits);
  const proxy = new SandboxProxy(sandboxes, log.child({ part: "proxy" }));
  let terminals: Terminals | undefined;
  const teamSandboxes = new TeamSandboxes(
    sandboxes,
    { templates, baseImage: options.baseImage },
    limits,
    (id) => {
      proxy.forget(id);
      terminals?.forget(id);
    },
    (info) => proxy.remember(info),
  );
  terminals = new Terminals(keys, teamSandboxes, sandboxes, log.child({ part: "terminal" }));
  const watch = new SandboxWatch(sandboxes, log.child({ part: "dashboard" }));
  const domain = options.domain;
  let http2Clients: Http2Clients | undefined;

  const app = Fastify({
    loggerInstance: log,
    bodyLimit: 1 << 20,
    serverFactory: (handler) => {
      const route: http.RequestListener = (req, res) => {
        const target = proxyTarget(req.headers, domain);
        if (target) proxy.handle(req, res, target);
        else handler(req, res);
      };
      const server = tls
        ? https.createServer(
            {
              cert: readFileSync(options.tlsCert as string),
              key: readFileSync(options.tlsKey as string),
              ALPNProtocols: ["h2", "http/1.1"],
            },
            route,
          )
        : http.createServer(route);
      server.on("upgrade", (req, socket, head) => {
        const target = proxyTarget(req.headers, domain);
        if (target) proxy.upgrade(req, socket, head, target);
        else if (terminals?.handles(req)) terminals.upgrade(req, socket, head);
        else socket.end("HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
      });
      http2Clients = acceptHttp2(server, tls, proxy, domain);
      // Streams through the proxy (a command's output, a watch) may be quiet for long.
      server.requestTimeout = 0;
      server.headersTimeout = 60_000;
      return server;
    },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest("team", "");
  // E2B clients send an empty body with a JSON content type on some calls.
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    if (body === "") return done(null, undefined);
    try {
      done(null, JSON.parse(body as string));
    } catch (err) {
      done(new ApiError(400, `the body is not JSON: ${(err as Error).message}`), undefined);
    }
  });
  await app.register(fastifySwagger, {
    openapi: {
      info: { title: "tether serve", description: "E2B-compatible control plane", version: "0.1.0" },
      components: { securitySchemes: { ApiKeyAuth: { type: "apiKey", in: "header", name: "X-API-KEY" } } },
      security: [{ ApiKeyAuth: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.addHook("onRequest", async (request) => {
    (request as { startedAt?: bigint }).startedAt = process.hrtime.bigint();
    if (request.url === "/health" || (request.method === "GET" && isDashboardAsset(request.url))) return;
    const key = request.headers["x-api-key"];
    const found = keys.verify(typeof key === "string" ? key : undefined);
    if (!found) throw new UnauthorizedError();
    request.team = found.team;
  });
  app.addHook("onResponse", async (request, reply) => {
    const route = request.routeOptions.url ?? "unmatched";
    metrics.requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    // The dashboard's live table hears of a change made through the API at once.
    if (request.method !== "GET" && /^\/(v2\/)?sandboxes/.test(request.url) && reply.statusCode < 400) watch.poke();
    const started = (request as { startedAt?: bigint }).startedAt;
    if (started !== undefined) {
      metrics.latency.observe({ method: request.method, route }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof ApiError) {
      return reply.code(err.status).headers(err.headers).send({ code: err.status, message: err.message });
    }
    if (hasZodFastifySchemaValidationErrors(err) || err.validation) {
      return reply.code(400).send({ code: 400, message: err.message });
    }
    if (err instanceof SandboxNotFoundError) return reply.code(404).send({ code: 404, message: err.message });
    if (typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ code: err.statusCode, message: err.message });
    }
    request.log.error({ err, url: request.url }, "request failed");
    return reply.code(500).send({ code: 500, message: err.message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ code: 404, message: `no route ${request.method} ${request.url}` }),
  );

  app.get("/health", async () => ({ status: "ok" }));
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  app.get("/metrics", { schema: { hide: true } }, async (_request, reply) =>
    reply.header("content-type", metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  // The routes are written for any server kind (http or https) and logger.
  e2bRoutes(app as unknown as FastifyInstance, teamSandboxes, { domain });
  dashboardAssets(app as unknown as FastifyInstance, dashboardAssetsDir());
  await dashboardRoutes(app as unknown as FastifyInstance, teamSandboxes, sandboxes, watch);
  dashboardTemplates(app as unknown as FastifyInstance, templates, sandboxes);

  // Adopt what runs already (sandboxes made by the CLI, or by a server before a restart).
  try {
    log.info({ reconcile: await sandboxes.reconcile() }, "reconciled");
  } catch (err) {
    // No engine right now is no reason not to serve: the expiry loop reconciles again later.
    log.warn({ err }, "reconcile at start failed");
  }
  const expiry: ExpiryLoop = startExpiryLoop(sandboxes, {
    intervalMs: options.expiryIntervalMs ?? 2000,
    onExpired: (expired) => {
      for (const e of expired) {
        proxy.forget(e.id);
        terminals?.forget(e.id);
      }
      watch.poke();
      log.info({ expired }, "expired");
    },
    onError: (err) => log.warn({ err }, "expiry failed"),
  });

  await app.listen({ host, port: options.port ?? 3000 });
  const port = (app.server.address() as AddressInfo).port;
  const shown = host.includes(":") ? `[${host}]` : host;
  const url = `${tls ? "https" : "http"}://${shown}:${port}`;
  log.info({ url, domain }, "tether serve listening");
  return {
    url,
    port,
    keys,
    templates,
    close: async () => {
      expiry.stop();
      watch.close();
      terminals?.close();
      http2Clients?.close();
      // Proxied streams (a command's output, a watch) may last for ever: they are cut, not
      // waited for (the sandboxes keep running), and connections still open after a grace
      // period are closed.
      proxy.close();
      const force = setTimeout(() => {
        app.server.closeAllConnections();
        http2Clients?.destroy();
      }, 5_000);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
      }
      db.close();
      if (!options.sandboxes) sandboxes.close();
    },
  };
}
