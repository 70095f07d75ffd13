import type { AgentContext } from "../context.js";
import { type HttpRequest, type HttpResponse, sendError } from "../http/respond.js";

// PLACEHOLDER: replaced by the real file endpoints.
export async function handleFilesDownload(_ctx: AgentContext, _req: HttpRequest, res: HttpResponse): Promise<void> {
  sendError(res, 501, "not implemented");
}
export async function handleFilesUpload(_ctx: AgentContext, _req: HttpRequest, res: HttpResponse): Promise<void> {
  sendError(res, 501, "not implemented");
}
