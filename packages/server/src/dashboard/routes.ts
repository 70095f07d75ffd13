import type { Readable } from "node:stream";
import type { Sandboxes } from "@tether/host";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { TeamSandboxes } from "../api/team-sandboxes.js";
import { BadRequestError } from "../errors.js";
import type { SandboxWatch } from "./events.js";

const Params = z.object({ sandboxID: z.string().regex(/^[a-z0-9]{1,64}$/) });
const PathQuery = z.object({ path: z.string().min(1).startsWith("/", "an absolute path") });

/**
 * What the dashboard needs beyond E2B's API, under `/dashboard/api` and behind the same
 * API key header as the rest: the team's sandboxes as a server-sent event stream, and a
 * sandbox's files and listening ports through its agent.
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
