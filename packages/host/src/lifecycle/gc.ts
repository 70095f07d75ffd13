import { createWriteStream } from "node:fs";
import { mkdir, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { finished } from "node:stream/promises";
import { EngineUnavailableError } from "../errors.js";
import type { SandboxRecord } from "../registry/registry.js";
import { type LifecycleContext, messageOf } from "./context.js";

/** Stopped and failed sandboxes untouched for this long are archived by default: a week. */
export const DEFAULT_GC_AGE_MS = 7 * 24 * 3600 * 1000;

export interface GcOptions {
  /** Archive sandboxes stopped or failed at least this long ago; default a week. */
  olderThanMs?: number;
  now?: number;
}

export interface GcReport {
  archived: { id: string; path: string }[];
  /** Sandboxes that were due but could not be archived (their backend did not answer...). */
  failed: { id: string; error: string }[];
  /** Agent bundles removed (see DockerBackend.pruneBundles); `skipped` says why none were looked at. */
  bundles?: { removed: { dir: string; bytes: number }[]; skipped?: string };
}

/** `archive/<UTC date>-<id>` under TETHER_HOME. */
function archivePath(home: string, id: string, at: Date): string {
  return path.join(home, "archive", `${at.toISOString().slice(0, 10)}-${id}`);
}

async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined)) !== undefined;
}

/**
 * Archives stale sandboxes: stopped or failed ones whose record has not changed for
 * `olderThanMs`. Each keeps, under `archive/<date>-<id>/`, its work directory (local,
 * bwrap), its output (every backend), its record and history (`sandbox.json`); then
 * its container or processes and host directory are removed and its record says
 * `archived`.
 */
export async function collectGarbage(ctx: LifecycleContext, options: GcOptions = {}): Promise<GcReport> {
  const now = options.now ?? Date.now();
  const threshold = now - (options.olderThanMs ?? DEFAULT_GC_AGE_MS);
  const report: GcReport = { archived: [], failed: [] };
  const due = ctx.registry
    .list({ states: ["stopped", "error"] })
    .filter((r) => Math.max(r.updatedAt.getTime(), r.lastUsedAt.getTime()) <= threshold);
  for (const record of due) {
    try {
      report.archived.push({ id: record.id, path: await archive(ctx, record, new Date(now)) });
    } catch (err) {
      const why =
        err instanceof EngineUnavailableError ? `its backend cannot be reached: ${messageOf(err)}` : messageOf(err);
      report.failed.push({ id: record.id, error: why });
    }
  }
  return report;
}

async function archive(ctx: LifecycleContext, record: SandboxRecord, at: Date): Promise<string> {
  const target = archivePath(ctx.home, record.id, at);
  await mkdir(target, { recursive: true, mode: 0o700 });
  const backend = ctx.backend(record.backend);
  const sandboxDir = path.join(ctx.home, "sandboxes", record.id);
  // The output first, while the backend still has it.
  const output = createWriteStream(path.join(target, "output.log"), { mode: 0o600 });
  try {
    for await (const chunk of backend.logs(record.id)) output.write(chunk.data);
  } catch {
    // Gone already (vanished, or never made): nothing to keep.
  }
  output.end();
  await finished(output);
  const work = path.join(sandboxDir, "work");
  if ((await exists(work)) && !(await exists(path.join(target, "work")))) {
    await rename(work, path.join(target, "work"));
  }
  await backend.remove(record.id);
  const archived = ctx.registry.update(
    record.id,
    { state: "archived", archivedAt: at, archivePath: target, backendId: undefined },
    { event: { kind: "archived", detail: target } },
  );
  await writeFile(
    path.join(target, "sandbox.json"),
    `${JSON.stringify({ record: archived ?? record, events: ctx.registry.events(record.id) }, null, 2)}\n`,
    { mode: 0o600 },
  );
  return target;
}
