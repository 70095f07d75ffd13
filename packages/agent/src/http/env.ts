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

/** The /init schema and zod load on the first /init (see init-schema.ts), not at start. */
let initSchema: Promise<typeof import("./init-schema.js")> | undefined;

/**
 * `POST /init`: sets defaults and, the first time, the access token. Once a token is
 * set the caller had to present it to get here (the auth gate runs first).
 */
export async function handleInit(ctx: AgentContext, req: HttpRequest, res: HttpResponse): Promise<void> {
  initSchema ??= import("./init-schema.js");
  const { initSchema: schema, prettifyError } = await initSchema;
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
