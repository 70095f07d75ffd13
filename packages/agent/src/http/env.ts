import type { z } from "zod";
import type { AgentContext } from "../context.js";
import { type HttpRequest, type HttpResponse, readJsonBody, sendError, sendJson } from "./respond.js";

/** `GET /health`: liveness, the one endpoint that needs no token. */
export function handleHealth(_req: HttpRequest, res: HttpResponse): void {
  res.writeHead(204);
  res.end();
}

/** `GET /envs`: the env vars every process gets by default. */
export function handleEnvs(ctx: AgentContext, _req: HttpRequest, res: HttpResponse): void {
  sendJson(res, 200, ctx.state.envVars);
}

/**
 * The /init body's schema. zod is loaded on the first /init, not at start: it is a few MB
 * the agent would otherwise carry (and copy into every fork) for a call most clients never make.
 */
async function loadInitSchema() {
  const { z } = await import("zod");
  const schema = z.object({
    envVars: z.record(z.string(), z.string()).optional(),
    accessToken: z.string().min(1).optional(),
    defaultUser: z.string().min(1).optional(),
    defaultWorkdir: z.string().min(1).optional(),
    timestamp: z.string().optional(),
  });
  return { schema, prettifyError: (error: z.ZodError) => z.prettifyError(error) };
}

let initSchema: ReturnType<typeof loadInitSchema> | undefined;

/**
 * `POST /init`: sets defaults and, the first time, the access token. Once a token is
 * set the caller had to present it to get here (the auth gate runs first).
 */
export async function handleInit(ctx: AgentContext, req: HttpRequest, res: HttpResponse): Promise<void> {
  initSchema ??= loadInitSchema();
  const { schema, prettifyError } = await initSchema;
  const parsed = schema.safeParse(await readJsonBody(req));
  if (!parsed.success) {
    sendError(res, 400, `invalid /init body: ${prettifyError(parsed.error)}`);
    return;
  }
  const body = parsed.data;
  if (body.defaultUser !== undefined) ctx.users.resolve(body.defaultUser);
  if (body.envVars) ctx.state.envVars = { ...ctx.state.envVars, ...body.envVars };
  if (body.defaultUser !== undefined) ctx.state.defaultUser = body.defaultUser;
  if (body.defaultWorkdir !== undefined) ctx.state.defaultWorkdir = body.defaultWorkdir;
  if (body.accessToken !== undefined) ctx.state.accessToken = body.accessToken;
  ctx.log.info({ envVars: Object.keys(body.envVars ?? {}), defaultUser: body.defaultUser }, "init");
  res.writeHead(204);
  res.end();
}
