import type { Readable } from "node:stream";
import { logLines, type Sandboxes } from "@tether/host";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { logRecord } from "../api/logs.js";
import type { TeamSandboxes } from "../api/team-sandboxes.js";
import { BadRequestError } from "../errors.js";
import type { SandboxWatch } from "./events.js";

const Params = z.object({ sandboxID: z.string().regex(/^[a-z0-9]{1,64}$/) });
const PathQuery = z.object({ path: z.string().min(1).startsWith("/", "an absolute path") });

/**
 * What the dashboard needs beyond E2B's API, under `/dashboard/api` and behind the same
 * API key header as the rest: the team's sandboxes as a server-sent event stream, a
 * sandbox's log followed as another, and its files and listening ports through its agent.
 */
export async function dashboardRoutes(
  app: FastifyInstance,
  team: TeamSandboxes,
  sandboxes: Sandboxes,
  watch: SandboxWatch,
): Promise<void> {
  const api = app.withTypeProvider<ZodTypeProvider>();

  api.get("/dashboard/api/whoami", { schema: { hide: true } }, async (request) => ({ team: request.team }));

  // fetch() reads this (EventSource cannot send the key header).
  api.get("/dashboard/api/events", { schema: { hide: true } }, async (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const unsubscribe = await watch.subscribe(request.team, (event) => {
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    });
    // A comment now and then keeps idle proxies from closing the stream.
    const ping = setInterval(() => res.write(": ping\n\n"), 15_000);
    request.raw.on("close", () => {
      clearInterval(ping);
      unsubscribe();
    });
  });

  /** Open log streams, cut when the server closes (they would otherwise hold it open). */
  const following = new Set<AbortController>();
  app.addHook("preClose", async () => {
    for (const stop of following) stop.abort();
  });

  // The sandbox's log, followed: its last lines, then each new one as the engine records
  // it (one engine stream per open page, rather than the page re-reading the log to poll
  // the logs endpoint). `end` says the sandbox stopped and nothing more will come.
  api.get(
    "/dashboard/api/sandboxes/:sandboxID/logs",
    {
      schema: {
        hide: true,
        params: Params,
        querystring: z.object({ tail: z.coerce.number().int().min(0).max(5000).default(500) }),
      },
    },
    async (request, reply) => {
      const info = await team.get(request.team, request.params.sandboxID);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      const stop = new AbortController();
      following.add(stop);
      request.raw.on("close", () => stop.abort());
      const ping = setInterval(() => res.write(": ping\n\n"), 15_000);
      try {
        const chunks = sandboxes.logs(info.id, {
          follow: true,
          timestamps: true,
          tail: request.query.tail,
          signal: stop.signal,
        });
        for await (const line of logLines(chunks)) {
          const r = logRecord(line, info.createdAt);
          const data = { timestamp: r.at.toISOString(), level: r.level, message: r.message, stream: line.stream };
          res.write(`event: line\ndata: ${JSON.stringify(data)}\n\n`);
        }
        if (!stop.signal.aborted) res.write("event: end\ndata: {}\n\n");
      } catch (err) {
        if (!stop.signal.aborted) {
          request.log.warn({ err, sandbox: info.id }, "following the sandbox's log failed");
          res.write(`event: error\ndata: ${JSON.stringify({ message: (err as Error).message })}\n\n`);
        }
      } finally {
        clearInterval(ping);
        following.delete(stop);
        res.end();
      }
    },
  );

  const agentOf = async (teamName: string, id: string) => {
    const info = await team.get(teamName, id);
    if (info.state !== "running") throw new BadRequestError(`sandbox ${id} is ${info.state}: resume it first`);
    return sandboxes.connect(id);
  };

  api.get(
    "/dashboard/api/sandboxes/:sandboxID/files",
    { schema: { hide: true, params: Params, querystring: PathQuery } },
    async (request) => {
      const agent = await agentOf(request.team, request.params.sandboxID);
      try {
        const entries = await agent.files.list(request.query.path);
        return entries.map((e) => ({
          name: e.name,
          path: e.path,
          type: e.type,
          size: e.size,
          modifiedTime: e.modifiedTime?.toISOString() ?? null,
        }));
      } finally {
        agent.close();
      }
    },
  );

  api.get(
    "/dashboard/api/sandboxes/:sandboxID/file",
    { schema: { hide: true, params: Params, querystring: PathQuery } },
    async (request, reply) => {
      const agent = await agentOf(request.team, request.params.sandboxID);
      try {
        const bytes = await agent.files.read(request.query.path, { format: "bytes" });
        const name = request.query.path.split("/").pop() || "file";
        return reply
          .header("content-type", "application/octet-stream")
          .header("content-disposition", `attachment; filename="${name.replace(/[^\w.-]/g, "_")}"`)
          .send(Buffer.from(bytes));
      } finally {
        agent.close();
      }
    },
  );

  await app.register(async (scope) => {
    // The upload's body goes to the agent as it arrives, not held whole in memory.
    scope.addContentTypeParser("application/octet-stream", (_request, payload, done) => done(null, payload));
    scope
      .withTypeProvider<ZodTypeProvider>()
      .put(
        "/dashboard/api/sandboxes/:sandboxID/file",
        { schema: { hide: true, params: Params, querystring: PathQuery }, bodyLimit: 1 << 30 },
        async (request, reply) => {
          const agent = await agentOf(request.team, request.params.sandboxID);
          try {
            const written = await agent.files.write(request.query.path, request.body as Readable);
            return reply.code(201).send({ path: written.path, name: written.name });
          } finally {
            agent.close();
          }
        },
      );
  });

  api.get("/dashboard/api/sandboxes/:sandboxID/ports", { schema: { hide: true, params: Params } }, async (request) => {
    const agent = await agentOf(request.team, request.params.sandboxID);
    try {
      const ports = await agent.ports.list();
      return ports.map((p) => ({ port: p.port, address: p.address, family: p.family }));
    } finally {
      agent.close();
    }
  });
}
