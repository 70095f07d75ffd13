import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import type { FastifyInstance } from "fastify";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
};

/** Where the dashboard's built assets are (`@tether/dashboard`'s dist/web), or undefined when it is not installed. */
export function dashboardAssetsDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve("@tether/dashboard/package.json");
    return path.join(path.dirname(pkg), "dist", "web");
  } catch {
    return undefined;
  }
}

/** Whether a request is for the dashboard's page or its assets, which need no API key (the page asks for one). */
export function isDashboardAsset(url: string): boolean {
  return url === "/" || url.startsWith("/assets/") || url.startsWith("/?");
}

/**
 * Serves the dashboard's page at `/` and its hashed assets at `/assets/*` from the files
 * built into the npm package: no build step and no CDN at run time.
 */
export function dashboardAssets(app: FastifyInstance, dir: string | undefined): void {
  const send = async (file: string, reply: import("fastify").FastifyReply, cache: string) => {
    if (!dir) return reply.code(404).send({ code: 404, message: "the dashboard (@tether/dashboard) is not installed" });
    const full = path.join(dir, file);
    // Hashed names only: nothing outside the assets folder.
    if (!full.startsWith(`${dir}${path.sep}`)) return reply.code(404).send({ code: 404, message: "no such asset" });
    try {
      const body = await readFile(full);
      return reply
        .header("content-type", TYPES[path.extname(full)] ?? "application/octet-stream")
        .header("cache-control", cache)
        .header("x-content-type-options", "nosniff")
        .send(body);
    } catch {
      return reply.code(404).send({ code: 404, message: `no asset ${file}` });
    }
  };
  app.get("/", { schema: { hide: true } }, async (_request, reply) => {
    // Everything the page runs comes from this server.
    reply.header(
      "content-security-policy",
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:",
    );
    return send("index.html", reply, "no-cache");
  });
  app.get<{ Params: { "*": string } }>("/assets/*", { schema: { hide: true } }, async (request, reply) =>
    send(path.join("assets", path.normalize(request.params["*"])), reply, "public, max-age=31536000, immutable"),
  );
}
