import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { NotImplementedError } from "../errors.js";
import type { Template } from "../templates/templates.js";
import {
  ConnectBody,
  ErrorBody,
  ForkBody,
  ListedSandbox,
  ListQuery,
  LogsQuery,
  LogsV2Query,
  MetricsQuery,
  NewSandboxBody,
  optionalBody,
  PauseBody,
  SandboxDetail,
  SandboxLogs,
  SandboxLogsV2,
  SandboxMetric,
  SandboxParams,
  SandboxResponse,
  SnapshotBody,
  SnapshotInfo,
  SnapshotQuery,
  TimeoutBody,
} from "./schemas.js";
import { DEFAULT_TIMEOUT_S, type TeamSandboxes } from "./team-sandboxes.js";
import { detailView, listedView, logEntryView, metricView, sandboxView, type ViewContext } from "./views.js";

const errors = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody, 429: ErrorBody, 500: ErrorBody };

/**
 * E2B's control-plane API (spec/openapi.yml in github.com/e2b-dev/E2B, whose types the e2b
 * SDK bundles): the paths, bodies and status codes the unmodified e2b SDKs use, v2 and the
 * older v1 forms. Every route runs as the team of the request's API key (`request.team`,
 * set by the auth hook).
 */
export function e2bRoutes(app: FastifyInstance, sandboxes: TeamSandboxes, view: ViewContext): void {
  const api = app.withTypeProvider<ZodTypeProvider>();

  for (const url of ["/v2/sandboxes", "/sandboxes"]) {
    api.post(
      url,
      { schema: { body: NewSandboxBody, response: { 201: SandboxResponse, ...errors } } },
      async (request, reply) => {
        const info = await sandboxes.create(request.team, request.body);
        request.log.info({ sandbox: info.id, team: request.team, template: request.body.templateID }, "created");
        return reply.code(201).send(sandboxView(info, view));
      },
    );
  }

  for (const url of ["/v2/sandboxes/:sandboxID/connect", "/sandboxes/:sandboxID/connect"]) {
    api.post(
      url,
      {
        schema: {
          params: SandboxParams,
          body: ConnectBody,
          response: { 200: SandboxResponse, 201: SandboxResponse, ...errors },
        },
      },
      async (request, reply) => {
        const { info, resumed } = await sandboxes.connect(request.team, request.params.sandboxID, request.body);
        return reply.code(resumed ? 201 : 200).send(sandboxView(info, view));
      },
    );
  }

  // v1 resume: 201 with the sandbox, 409 when it is running.
  api.post(
    "/sandboxes/:sandboxID/resume",
    {
      schema: {
        params: SandboxParams,
        body: optionalBody(z.looseObject({ timeout: z.number().int().min(1).optional() })),
        response: { 201: SandboxResponse, ...errors },
      },
    },
    async (request, reply) => {
      const current = await sandboxes.get(request.team, request.params.sandboxID);
      if (current.state === "running") {
        return reply.code(409).send({ code: 409, message: `sandbox ${current.id} is already running` });
      }
      const { info } = await sandboxes.connect(request.team, current.id, { timeout: request.body.timeout });
      return reply.code(201).send(sandboxView(info, view));
    },
  );

  api.get(
    "/v2/sandboxes",
    { schema: { querystring: ListQuery, response: { 200: z.array(ListedSandbox), ...errors } } },
    async (request, reply) => {
      const page = await sandboxes.list(request.team, request.query);
      // The SDK reads the header's absence (or emptiness) as the last page.
      if (page.nextToken) reply.header("x-next-token", page.nextToken);
      return page.items.map(listedView);
    },
  );

  // v1 list: running sandboxes only, no paging.
  api.get(
    "/sandboxes",
    {
      schema: {
        querystring: ListQuery.pick({ metadata: true }),
        response: { 200: z.array(ListedSandbox), ...errors },
      },
    },
    async (request) => {
      const page = await sandboxes.list(request.team, { metadata: request.query.metadata, state: ["running"] });
      const all = [...page.items];
      let next = page.nextToken;
      while (next) {
        const more = await sandboxes.list(request.team, {
          metadata: request.query.metadata,
          state: ["running"],
          nextToken: next,
        });
        all.push(...more.items);
        next = more.nextToken;
      }
      return all.map(listedView);
    },
  );

  api.get(
    "/sandboxes/:sandboxID",
    { schema: { params: SandboxParams, response: { 200: SandboxDetail, ...errors } } },
    async (request) => detailView(await sandboxes.get(request.team, request.params.sandboxID), view),
  );

  api.delete("/sandboxes/:sandboxID", { schema: { params: SandboxParams } }, async (request, reply) => {
    await sandboxes.kill(request.team, request.params.sandboxID);
    request.log.info({ sandbox: request.params.sandboxID, team: request.team }, "killed");
    return reply.code(204).send();
  });

  api.post(
    "/sandboxes/:sandboxID/timeout",
    { schema: { params: SandboxParams, body: TimeoutBody } },
    async (request, reply) => {
      await sandboxes.setTimeout(request.team, request.params.sandboxID, request.body.timeout);
      return reply.code(204).send();
    },
  );

  // v1 keep-alive: extends (never shortens) the lifetime by `duration` seconds from now.
  api.post(
    "/sandboxes/:sandboxID/refreshes",
    {
      schema: {
        params: SandboxParams,
        body: optionalBody(z.looseObject({ duration: z.number().int().min(0).max(3600).optional() })),
      },
    },
    async (request, reply) => {
      const info = await sandboxes.get(request.team, request.params.sandboxID);
      const seconds = request.body.duration ?? DEFAULT_TIMEOUT_S;
      const wanted = Date.now() + seconds * 1000;
      if (!info.expiresAt || info.expiresAt.getTime() < wanted) {
        await sandboxes.setTimeout(request.team, info.id, seconds);
      }
      return reply.code(204).send();
    },
  );

  api.post(
    "/sandboxes/:sandboxID/pause",
    { schema: { params: SandboxParams, body: PauseBody } },
    async (request, reply) => {
      await sandboxes.pause(request.team, request.params.sandboxID, request.body.memory ?? true);
      request.log.info({ sandbox: request.params.sandboxID, memory: request.body.memory ?? true }, "paused");
      return reply.code(204).send();
    },
  );

  api.get(
    "/sandboxes/:sandboxID/metrics",
    {
      schema: {
        params: SandboxParams,
        querystring: MetricsQuery,
        response: { 200: z.array(SandboxMetric), ...errors },
      },
    },
    async (request) => (await sandboxes.metrics(request.team, request.params.sandboxID, request.query)).map(metricView),
  );

  // v1 (deprecated by E2B, still what Python's API client has): lines from `start`, oldest first.
  api.get(
    "/sandboxes/:sandboxID/logs",
    {
      schema: { params: SandboxParams, querystring: LogsQuery, response: { 200: SandboxLogs, ...errors } },
    },
    async (request) => {
      const records = await sandboxes.logs(request.team, request.params.sandboxID, {
        cursor: request.query.start,
        limit: request.query.limit,
        direction: "forward",
      });
      return {
        logs: records.map((r) => ({ timestamp: r.at.toISOString(), line: r.line })),
        logEntries: records.map(logEntryView),
      };
    },
  );

  api.get(
    "/v2/sandboxes/:sandboxID/logs",
    {
      schema: { params: SandboxParams, querystring: LogsV2Query, response: { 200: SandboxLogsV2, ...errors } },
    },
    async (request) => {
      const { cursor, ...query } = request.query;
      const records = await sandboxes.logs(request.team, request.params.sandboxID, {
        ...query,
        ...(cursor !== undefined ? { cursor } : {}),
      });
      return { logs: records.map(logEntryView) };
    },
  );

  const snapshotView = (t: Template) => ({ snapshotID: t.name, names: t.alias ? [t.alias] : [] });

  api.post(
    "/sandboxes/:sandboxID/snapshots",
    { schema: { params: SandboxParams, body: SnapshotBody, response: { 201: SnapshotInfo, ...errors } } },
    async (request, reply) => {
      const snapshot = await sandboxes.snapshot(request.team, request.params.sandboxID, request.body.name);
      request.log.info({ sandbox: request.params.sandboxID, snapshot: snapshot.name }, "snapshot");
      return reply.code(201).send(snapshotView(snapshot));
    },
  );

  api.get(
    "/snapshots",
    { schema: { querystring: SnapshotQuery, response: { 200: z.array(SnapshotInfo), ...errors } } },
    async (request, reply) => {
      const page = sandboxes.listSnapshots(request.team, request.query);
      if (page.nextToken) reply.header("x-next-token", page.nextToken);
      return page.items.map(snapshotView);
    },
  );

  // E2B deletes snapshots as templates; here only a team's own snapshots can be deleted.
  api.delete(
    "/templates/:templateID",
    { schema: { params: z.object({ templateID: z.string().min(1) }) } },
    async (request, reply) => {
      await sandboxes.deleteSnapshot(request.team, request.params.templateID);
      return reply.code(204).send();
    },
  );

  api.post(
    "/sandboxes/:sandboxID/fork",
    { schema: { params: SandboxParams, body: ForkBody } },
    async (request, reply) => {
      const results = await sandboxes.fork(request.team, request.params.sandboxID, request.body);
      return reply
        .code(201)
        .send(results.map((r) => ("sandbox" in r ? { sandbox: sandboxView(r.sandbox, view) } : { error: r.error })));
    },
  );

  // Parts of E2B's API not implemented yet: a plain 501, never a pretend success.
  const missing: [string, string, string][] = [["PUT", "/sandboxes/:sandboxID/network", "network configuration"]];
  for (const [method, url, what] of missing) {
    app.route({
      method: method as "GET",
      url,
      handler: async () => {
        throw new NotImplementedError(what);
      },
    });
  }
}
