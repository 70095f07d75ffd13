import { LIFETIME_STATES, type SandboxInfo } from "../backends/backend.js";
import { EngineUnavailableError, InvalidSandboxSpecError } from "../errors.js";
import { isAlive } from "../process-identity.js";
import type { RecordState, SandboxRecord } from "../registry/registry.js";
import { isValidSandboxId, SandboxDir } from "../sandbox-dir.js";
import { type LifecycleContext, messageOf } from "./context.js";

/** What a reconcile found and did. */
export interface ReconcileReport {
  /** Sandboxes the backends have that the registry did not know: recorded now. */
  adopted: string[];
  /** Recorded sandboxes the backends no longer have: marked `error`. */
  vanished: string[];
  /** Recorded states that drifted from the backends': corrected. */
  fixed: { id: string; from: RecordState; to: RecordState }[];
  /** Creations whose process died (kill -9, crash): finished as what the backend has, or marked `error`. */
  interrupted: { id: string; outcome: RecordState }[];
  /** Backends that could not be asked (their sandboxes' records were left as they were). */
  skipped: { backend: string; reason: string }[];
}

/** What an interrupted create left, when it left nothing usable. */
export const INTERRUPTED_CREATE = "interrupted while being created (the creating process is gone)";
/** What a sandbox removed outside Tether is marked with. */
export const VANISHED = "vanished: removed outside tether";

/**
 * Makes the registry agree with the backends, for every backend that answers:
 * adopts labelled sandboxes it did not know, marks recorded ones that are gone,
 * corrects drifted states, and settles creations whose process died. Safe to run
 * in several processes at once: every change re-checks the record it read
 * (unchanged since), and a creation whose process still lives is left alone.
 * Returns the live sandboxes too, by id.
 */
export async function reconcile(
  ctx: LifecycleContext,
): Promise<{ report: ReconcileReport; live: Map<string, SandboxInfo> }> {
  const report: ReconcileReport = { adopted: [], vanished: [], fixed: [], interrupted: [], skipped: [] };
  const live = new Map<string, SandboxInfo>();
  for (const kind of ctx.kinds()) {
    const backend = ctx.backend(kind);
    let infos: SandboxInfo[];
    try {
      // The backend first, the records second: a record is always written before its
      // sandbox exists, so a sandbox seen here without a record was not made by us.
      infos = await backend.list();
    } catch (err) {
      if (!(err instanceof EngineUnavailableError)) throw err;
      report.skipped.push({ backend: kind, reason: messageOf(err) });
      continue;
    }
    for (const info of infos) live.set(info.id, info);
    const records = ctx.registry.list({ backend: kind, states: LIFETIME_STATES });
    const known = new Set(records.map((r) => r.id));
    for (const info of infos) {
      if (known.has(info.id) || ctx.registry.get(info.id)) continue;
      if (adopt(ctx, info)) report.adopted.push(info.id);
    }
    for (const record of records) {
      await settle(ctx, record, live.get(record.id), report);
    }
  }
  return { report, live };
}

function adopt(ctx: LifecycleContext, info: SandboxInfo): boolean {
  const fields = {
    id: info.id,
    backend: info.backend,
    image: info.image,
    state: info.state === "archived" ? "stopped" : info.state,
    labels: info.labels,
    createdAt: info.createdAt,
    backendId: info.backendId || undefined,
    metadata: { adopted: new Date().toISOString() },
  } as const;
  for (const name of [info.name, `${info.name}-${info.id}`]) {
    try {
      ctx.registry.insert({ ...fields, name });
      ctx.registry.addEvent(info.id, "adopted", `found in ${info.backend}, not in the registry`);
      return true;
    } catch (err) {
      if (!(err instanceof InvalidSandboxSpecError)) throw err;
      // Another process adopted it first, or the name is taken: try the next name.
      if (ctx.registry.get(info.id)) return false;
    }
  }
  return false;
}

async function settle(
  ctx: LifecycleContext,
  record: SandboxRecord,
  info: SandboxInfo | undefined,
  report: ReconcileReport,
): Promise<void> {
  const unchanged = (current: SandboxRecord) => current.updatedAt.getTime() === record.updatedAt.getTime();
  if (record.state === "creating") {
    if (record.creator && isAlive(record.creator)) return;
    if (!record.creator && Date.now() - record.updatedAt.getTime() < 60_000) return;
    // A running sandbox is kept only if its creator got as far as linking its agent's
    // socket (SandboxDir.adoptSocket): linking it now would trust whatever the sandbox
    // has put in its directory since. A stopped one links afresh at its next start.
    const reachable =
      info?.state === "stopped" ||
      (isValidSandboxId(record.id) && (await new SandboxDir(ctx.home, record.id).hasAdoptedSocket()));
    if (info && reachable && (info.state === "running" || info.state === "paused" || info.state === "stopped")) {
      // The sandbox was made; only the record was not finished.
      const done = ctx.registry.update(
        record.id,
        { state: info.state, backendId: info.backendId || undefined, creator: undefined, error: undefined },
        { onlyIf: unchanged, event: { kind: "create-interrupted", detail: `found ${info.state}: kept` } },
      );
      if (done) report.interrupted.push({ id: record.id, outcome: info.state });
      return;
    }
    // Half made or not made at all: remove whatever there is, so nothing runs unrecorded.
    await ctx
      .backend(record.backend)
      .remove(record.id)
      .catch(() => {});
    const done = ctx.registry.update(
      record.id,
      { state: "error", error: INTERRUPTED_CREATE, creator: undefined },
      {
        onlyIf: unchanged,
        event: { kind: "create-interrupted", detail: info ? `found ${info.state}: removed` : "nothing found" },
      },
    );
    if (done) report.interrupted.push({ id: record.id, outcome: "error" });
    return;
  }
  if (!info) {
    if (record.state === "error") return;
    const done = ctx.registry.update(
      record.id,
      { state: "error", error: VANISHED, backendId: undefined },
      { onlyIf: unchanged, event: { kind: "vanished", detail: `was ${record.state}` } },
    );
    if (done) report.vanished.push(record.id);
    return;
  }
  const state = info.state === "archived" ? record.state : info.state;
  if (state !== record.state) {
    const done = ctx.registry.update(
      record.id,
      { state, backendId: info.backendId || undefined, ...(state === "error" ? {} : { error: undefined }) },
      { onlyIf: unchanged, event: { kind: "drift", detail: `${record.state} -> ${state}` } },
    );
    if (done) report.fixed.push({ id: record.id, from: record.state, to: state });
  }
}
