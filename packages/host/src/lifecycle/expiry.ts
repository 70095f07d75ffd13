import { agentActivity } from "../agent-activity.js";
import { EngineUnavailableError, SandboxNotFoundError } from "../errors.js";
import type { ExpiryAction, SandboxRecord } from "../registry/registry.js";
import { SandboxDir } from "../sandbox-dir.js";
import { type LifecycleContext, messageOf } from "./context.js";

/** One sandbox whose time ran out. */
export interface Expired {
  id: string;
  /** "timeout" (absolute) or "idle". */
  reason: "timeout" | "idle";
  action: ExpiryAction;
  /** Set when the action failed (the record is left for the next pass). */
  error?: string;
}

/**
 * Why a sandbox has expired at `now`, or undefined. The idle clock runs from the later
 * of the host's last use and the agent's last request; a request in flight (a command
 * streaming its output) keeps it busy. The agent is asked only once the host's own
 * clock says idle, so a busy registry costs no more than a query.
 */
export async function expiryReason(
  ctx: LifecycleContext,
  record: SandboxRecord,
  now: number,
): Promise<"timeout" | "idle" | undefined> {
  if (record.expiresAt && record.expiresAt.getTime() <= now) return "timeout";
  if (record.idleTimeoutMs === undefined) return undefined;
  let last = record.lastUsedAt.getTime();
  if (now - last < record.idleTimeoutMs) return undefined;
  // A frozen agent cannot answer; only the host's clock counts for a paused sandbox.
  if (record.state === "running") {
    const dir = new SandboxDir(ctx.home, record.id);
    const token = await dir.readToken();
    const activity = token ? await agentActivity(dir.socketPath, token) : undefined;
    if (activity) {
      if (activity.activeRequests > 0) {
        ctx.registry.touch(record.id, new Date(now));
        return undefined;
      }
      last = Math.max(last, activity.lastActivity);
      if (activity.lastActivity > record.lastUsedAt.getTime()) ctx.registry.touch(record.id, new Date(last));
    }
  }
  return now - last >= record.idleTimeoutMs ? "idle" : undefined;
}

/**
 * Stops or removes (as each is configured) every running or paused sandbox whose
 * timeout or idle timeout has passed. Runs on every CLI call and in the expiry loop of
 * a long-running process; several at once only repeat idempotent steps.
 */
export async function expireSandboxes(ctx: LifecycleContext, now = Date.now()): Promise<Expired[]> {
  const out: Expired[] = [];
  for (const record of ctx.registry.list({ states: ["running", "paused"] })) {
    const reason = await expiryReason(ctx, record, now);
    if (!reason) continue;
    const expired: Expired = { id: record.id, reason, action: record.onExpiry };
    const detail = reason === "timeout" ? "its timeout passed" : `idle for ${record.idleTimeoutMs} ms`;
    try {
      const backend = ctx.backend(record.backend);
      if (record.onExpiry === "remove") {
        await backend.remove(record.id);
        ctx.registry.delete(record.id, { event: { kind: "expired", detail: `${detail}: removed` } });
      } else {
        await backend.stop(record.id).catch((err) => {
          if (!(err instanceof SandboxNotFoundError)) throw err;
        });
        ctx.registry.update(
          record.id,
          { state: "stopped" },
          {
            onlyIf: (current) => current.state === "running" || current.state === "paused",
            event: { kind: "expired", detail: `${detail}: stopped` },
          },
        );
      }
    } catch (err) {
      if (!(err instanceof EngineUnavailableError)) expired.error = messageOf(err);
      else expired.error = `its backend cannot be reached: ${messageOf(err)}`;
    }
    out.push(expired);
  }
  return out;
}
