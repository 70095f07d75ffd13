import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { buildImage, DockerBackend, type Sandboxes } from "@tether/host";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { ConflictError, NotFoundError } from "../errors.js";
import type { Templates } from "../templates/templates.js";

const Name = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "lower-case letters, digits, . _ - only");
const Resources = {
  cpus: z.number().positive().max(256).optional(),
  memoryMB: z.number().int().positive().optional(),
};
const NewTemplate = z.object({ name: Name, image: z.string().min(1).max(512), ...Resources });
const BuildTemplate = z.object({
  name: Name,
  dockerfile: z
    .string()
    .min(1)
    .max(1 << 20),
  ...Resources,
});

/**
 * Templates from the dashboard: the list a team may use, a new one naming an image the
 * engine has, and one built from a Dockerfile with the build's log streamed back. Like
 * the CLI's `tether template`, these templates are every team's; a name in use is refused
 * (409), never replaced.
 */
export function dashboardTemplates(app: FastifyInstance, templates: Templates, sandboxes: Sandboxes): void {
  const api = app.withTypeProvider<ZodTypeProvider>();
  const docker = () => {
    const backend = sandboxes.backendFor("docker");
    if (!(backend instanceof DockerBackend)) throw new NotFoundError("no Docker backend");
    return backend.docker;
  };
  const free = (name: string) => {
    if (templates.list().some((t) => t.name === name || t.alias === name)) {
      throw new ConflictError(`a template named ${name} exists`);
    }
  };
  const defaults = (body: { cpus?: number; memoryMB?: number }) => ({
    ...(body.cpus !== undefined ? { cpus: body.cpus } : {}),
    ...(body.memoryMB !== undefined ? { memoryMB: body.memoryMB } : {}),
  });

  api.get("/dashboard/api/templates", { schema: { hide: true } }, async (request) =>
    templates
      .list()
      .filter((t) => t.team === undefined || t.team === request.team)
      .map((t) => ({
        name: t.name,
        image: t.image,
        cpus: t.defaults.cpus ?? null,
        memoryMB: t.defaults.memoryMB ?? null,
        snapshot: t.team !== undefined,
        createdAt: t.createdAt.toISOString(),
      })),
  );

  api.post("/dashboard/api/templates", { schema: { hide: true, body: NewTemplate } }, async (request, reply) => {
    free(request.body.name);
    const found = await docker()
      .getImage(request.body.image)
      .inspect()
      .catch(() => undefined);
    if (!found) throw new NotFoundError(`no local image ${request.body.image}`);
    const t = templates.put(request.body.name, request.body.image, defaults(request.body));
    request.log.info({ template: t.name, image: t.image, team: request.team }, "template registered");
    return reply.code(201).send({ name: t.name, image: t.image });
  });

  // The log streams as plain text lines; the last line says how it ended.
  api.post(
    "/dashboard/api/templates/build",
    { schema: { hide: true, body: BuildTemplate } },
    async (request, reply) => {
      free(request.body.name);
      const engine = docker();
      const dir = await mkdtemp(path.join(os.tmpdir(), "tether-dashboard-build-"));
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      try {
        await writeFile(path.join(dir, "Dockerfile"), request.body.dockerfile);
        const { tag } = await buildImage(engine, {
          context: dir,
          tag: `tether-template/${request.body.name}:latest`,
          onProgress: (line) => res.write(`${line}\n`),
        });
        templates.put(request.body.name, tag, defaults(request.body));
        request.log.info({ template: request.body.name, image: tag, team: request.team }, "template built");
        res.end(`built ${request.body.name} (${tag})\n`);
      } catch (err) {
        res.end(`failed: ${(err as Error).message}\n`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
}
