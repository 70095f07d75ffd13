import { existsSync } from "node:fs";
import path from "node:path";
import type Database from "better-sqlite3";
import type { SandboxState } from "../backends/backend.js";
import { InvalidSandboxSpecError, RegistryError } from "../errors.js";
import type { ProcessIdentity } from "../process-identity.js";
import {
  cannotWrite,
  openDatabase,
  openSnapshot,
  registryDamage,
  schemaVersion,
  setRegistryAside,
} from "./database.js";
import { MIGRATIONS } from "./migrations.js";

/** The registry's file name inside TETHER_HOME. */
export const REGISTRY_FILE = "tether.db";

/** A sandbox's state as recorded: the backends' states, plus `archived` (gone, work directory kept). */
export type RecordState = SandboxState;

/** What `repairRegistry` found and did. */
export interface RegistryRepair {
  file: string;
  /** What was wrong; undefined when the registry was sound (and left as it was). */
  damage?: string;
  /** Where the damaged registry was moved. */
  backup?: string;
}

/**
 * Checks the registry of `home` and, when it is damaged, moves it (with its WAL) aside and
 * makes a new, empty one. Reconcile then adopts the sandboxes the backends still have
 * (their timeouts, metadata and history stay in the backup).
 */
export function repairRegistry(home: string): RegistryRepair {
  const file = path.join(home, REGISTRY_FILE);
  const damage = registryDamage(file);
  if (!damage) return { file };
  const backup = setRegistryAside(file);
  new Registry(home).close();
  return { file, damage, backup };
}

/** The registry of `home` in a few words, for `tether doctor`: sound, not made yet, damaged, or why it cannot be opened. */
export function registryHealth(home: string): string {
  const file = path.join(home, REGISTRY_FILE);
  if (!existsSync(file)) return "not made yet";
  try {
    const damage = registryDamage(file);
    return damage ? `DAMAGED (${damage}): run tether doctor --repair` : "sound";
  } catch (err) {
    return `cannot be opened: ${(err as Error).message}`;
  }
}

/** What happens to a sandbox when its timeout or idle timeout passes. */
export type ExpiryAction = "stop" | "remove";

/** One sandbox as the registry has it. */
export interface SandboxRecord {
  id: string;
  name: string;
  /** "docker", "bwrap" or "local". */
  backend: string;
  image: string;
  state: RecordState;
  /** Why the sandbox is in state `error` (or what reconcile found). */
  error?: string;
  labels: Record<string, string>;
  /** Free-form facts about the sandbox (how it came to be, its work directory ...). */
  metadata: Record<string, unknown>;
  /** What it was given: cpus, memory, pids, network, runtime. */
  resources: Record<string, unknown>;
  /** The backend's id for it (container id, supervisor pid). */
  backendId?: string;
  createdAt: Date;
  updatedAt: Date;
  /** The last host-side operation on it (create, start, connect, logs ...). */
  lastUsedAt: Date;
  /** Lifetime from each (re)start; `expiresAt` is derived from it. */
  timeoutMs?: number;
  /** When the absolute timeout passes. */
  expiresAt?: Date;
  /** How long the sandbox may go without agent or host activity. */
  idleTimeoutMs?: number;
  onExpiry: ExpiryAction;
  /** The process creating it, while state is `creating`. */
  creator?: ProcessIdentity;
  archivedAt?: Date;
  archivePath?: string;
}

/** What `insert` needs; the rest gets defaults. */
export type NewSandboxRecord = Pick<SandboxRecord, "id" | "name" | "backend" | "image" | "state"> &
  Partial<Omit<SandboxRecord, "id" | "name" | "backend" | "image" | "state" | "updatedAt">>;

/** Fields `update` may change. */
export type SandboxRecordPatch = Partial<Omit<SandboxRecord, "id" | "createdAt" | "updatedAt">>;

export interface RecordFilter {
  backend?: string;
  /** Any of these states; default every state but `archived`. */
  states?: readonly RecordState[];
  /** Every one of these labels, with these values. */
  labels?: Record<string, string>;
}

/** One line of a sandbox's history. */
export interface SandboxEvent {
  sandboxId: string;
  at: Date;
  kind: string;
  detail?: string;
}

interface Row {
  id: string;
  name: string;
  backend: string;
  image: string;
  state: RecordState;
  error: string | null;
  labels: string;
  metadata: string;
  resources: string;
  backend_id: string | null;
  created_at: number;
  updated_at: number;
  last_used_at: number;
  timeout_ms: number | null;
  expires_at: number | null;
  idle_timeout_ms: number | null;
  on_expiry: ExpiryAction;
  creator_pid: number | null;
  creator_start: string | null;
  archived_at: number | null;
  archive_path: string | null;
}

/** Record field -> column, for inserts and patches. */
const COLUMNS: Record<keyof Omit<SandboxRecord, "creator">, keyof Row> = {
  id: "id",
  name: "name",
  backend: "backend",
  image: "image",
  state: "state",
  error: "error",
  labels: "labels",
  metadata: "metadata",
  resources: "resources",
  backendId: "backend_id",
  createdAt: "created_at",
  updatedAt: "updated_at",
  lastUsedAt: "last_used_at",
  timeoutMs: "timeout_ms",
  expiresAt: "expires_at",
  idleTimeoutMs: "idle_timeout_ms",
  onExpiry: "on_expiry",
  archivedAt: "archived_at",
  archivePath: "archive_path",
};
const JSON_FIELDS = new Set(["labels", "metadata", "resources"]);

function toColumns(
  fields: SandboxRecordPatch & { id?: string; createdAt?: Date; updatedAt?: Date },
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (key === "creator") {
      const creator = value as ProcessIdentity | undefined;
      out.creator_pid = creator?.pid ?? null;
      out.creator_start = creator?.start ?? null;
      continue;
    }
    const column = COLUMNS[key as keyof typeof COLUMNS];
    if (!column) throw new TypeError(`unknown sandbox record field ${key}`);
    if (value === undefined) out[column] = null;
    else if (value instanceof Date) out[column] = value.getTime();
    else if (JSON_FIELDS.has(key)) out[column] = JSON.stringify(value);
    else out[column] = value;
  }
  return out;
}

function fromRow(row: Row): SandboxRecord {
  const record: SandboxRecord = {
    id: row.id,
    name: row.name,
    backend: row.backend,
    image: row.image,
    state: row.state,
    labels: JSON.parse(row.labels),
    metadata: JSON.parse(row.metadata),
    resources: JSON.parse(row.resources),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    lastUsedAt: new Date(row.last_used_at),
    onExpiry: row.on_expiry,
  };
  if (row.error !== null) record.error = row.error;
  if (row.backend_id !== null) record.backendId = row.backend_id;
  if (row.timeout_ms !== null) record.timeoutMs = row.timeout_ms;
  if (row.expires_at !== null) record.expiresAt = new Date(row.expires_at);
  if (row.idle_timeout_ms !== null) record.idleTimeoutMs = row.idle_timeout_ms;
  if (row.creator_pid !== null && row.creator_start !== null) {
    record.creator = { pid: row.creator_pid, start: row.creator_start };
  }
  if (row.archived_at !== null) record.archivedAt = new Date(row.archived_at);
  if (row.archive_path !== null) record.archivePath = row.archive_path;
  return record;
}

function isConstraintError(err: unknown): boolean {
  return (err as { code?: string }).code?.startsWith("SQLITE_CONSTRAINT") ?? false;
}

/**
 * The sandboxes of one TETHER_HOME, in SQLite (`tether.db`). Safe to use from several
 * processes at once: every write is one BEGIN IMMEDIATE transaction (writers queue on
 * the busy timeout), reads see a consistent snapshot (WAL).
 */
export class Registry {
  readonly file: string;
  /**
   * Why this registry can only be read, when its directory cannot be written (full, or
   * read-only): it was opened from a private snapshot, and every write throws RegistryError.
   */
  readonly readOnly: string | undefined;
  private readonly db: Database.Database;

  constructor(readonly home: string) {
    this.file = path.join(home, REGISTRY_FILE);
    let readOnly: string | undefined;
    try {
      this.db = openDatabase(this.file);
    } catch (err) {
      readOnly = err instanceof RegistryError && existsSync(this.file) ? cannotWrite(this.file, err.cause) : undefined;
      if (!readOnly) throw err;
      this.db = openSnapshot(this.file);
      if (schemaVersion(this.db) !== MIGRATIONS.at(-1)?.version) throw err;
    }
    this.readOnly = readOnly;
  }

  /** Runs `fn` in one BEGIN IMMEDIATE transaction: it sees no other writer until it commits. */
  transaction<T>(fn: () => T): T {
    if (this.readOnly) {
      throw new RegistryError(`the registry ${this.file} cannot be written now: ${this.readOnly}`);
    }
    try {
      return this.db.transaction(fn).immediate();
    } catch (err) {
      const why = cannotWrite(this.file, err);
      if (why) throw new RegistryError(`cannot write the registry ${this.file}: ${why}`, { cause: err });
      throw err;
    }
  }

  /** Records a new sandbox; InvalidSandboxSpecError when its id or name is taken. */
  insert(record: NewSandboxRecord): SandboxRecord {
    const now = new Date();
    const full = {
      labels: {},
      metadata: {},
      resources: {},
      onExpiry: "stop" as const,
      createdAt: now,
      lastUsedAt: now,
      ...record,
      updatedAt: now,
    };
    const columns = toColumns(full);
    const names = Object.keys(columns);
    try {
      this.transaction(() => {
        const clash = this.db
          .prepare("SELECT id FROM sandboxes WHERE id = ? OR (name = ? AND state <> 'archived')")
          .get(record.id, record.name) as { id: string } | undefined;
        if (clash) {
          throw new InvalidSandboxSpecError(
            clash.id === record.id
              ? `a sandbox with id ${record.id} already exists`
              : `the name ${record.name} is taken by sandbox ${clash.id}`,
          );
        }
        this.db
          .prepare(`INSERT INTO sandboxes (${names.join(", ")}) VALUES (${names.map((n) => `@${n}`).join(", ")})`)
          .run(columns);
        this.addEvent(record.id, "created", `${record.backend} ${record.image} (${record.state})`);
      });
    } catch (err) {
      if (isConstraintError(err)) {
        throw new InvalidSandboxSpecError(`a sandbox with id ${record.id} or name ${record.name} already exists`);
      }
      throw err;
    }
    return this.get(record.id) as SandboxRecord;
  }

  /** The sandbox with this id, or the live one with this name. */
  get(idOrName: string): SandboxRecord | undefined {
    const row = this.db
      .prepare(
        "SELECT * FROM sandboxes WHERE id = ? UNION ALL SELECT * FROM sandboxes WHERE name = ? AND state <> 'archived' LIMIT 1",
      )
      .get(idOrName, idOrName) as Row | undefined;
    return row && fromRow(row);
  }

  /** Sandboxes matching the filter, oldest first. */
  list(filter: RecordFilter = {}): SandboxRecord[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.backend) {
      where.push("backend = ?");
      params.push(filter.backend);
    }
    if (filter.states) {
      if (filter.states.length === 0) return [];
      where.push(`state IN (${filter.states.map(() => "?").join(", ")})`);
      params.push(...filter.states);
    } else {
      where.push("state <> 'archived'");
    }
    for (const [key, value] of Object.entries(filter.labels ?? {})) {
      where.push("json_extract(labels, ?) = ?");
      params.push(`$."${key.replaceAll('"', '""')}"`, value);
    }
    const sql = `SELECT * FROM sandboxes ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY created_at, id`;
    return (this.db.prepare(sql).all(...params) as Row[]).map(fromRow);
  }

  /**
   * Changes a sandbox's fields (and notes `event` in its history) in one transaction;
   * with `onlyIf`, only while its record still satisfies it (another process may have
   * changed it meanwhile). Returns the record as written, or undefined when unchanged.
   */
  update(
    id: string,
    patch: SandboxRecordPatch,
    options: { event?: { kind: string; detail?: string }; onlyIf?: (current: SandboxRecord) => boolean } = {},
  ): SandboxRecord | undefined {
    return this.transaction(() => {
      const current = this.db.prepare("SELECT * FROM sandboxes WHERE id = ?").get(id) as Row | undefined;
      if (!current) return undefined;
      if (options.onlyIf && !options.onlyIf(fromRow(current))) return undefined;
      const columns = toColumns({ ...patch, updatedAt: new Date() });
      const sets = Object.keys(columns).map((c) => `${c} = @${c}`);
      this.db.prepare(`UPDATE sandboxes SET ${sets.join(", ")} WHERE id = @id`).run({ ...columns, id });
      if (options.event) this.addEvent(id, options.event.kind, options.event.detail);
      return fromRow(this.db.prepare("SELECT * FROM sandboxes WHERE id = ?").get(id) as Row);
    });
  }

  /** Notes host-side use of a sandbox (counts against its idle timeout). */
  touch(id: string, at = new Date()): void {
    // Best effort: a registry that cannot be written must not stop the use itself.
    if (this.readOnly) return;
    try {
      this.db.prepare("UPDATE sandboxes SET last_used_at = max(last_used_at, ?) WHERE id = ?").run(at.getTime(), id);
    } catch (err) {
      if (!cannotWrite(this.file, err)) throw err;
    }
  }

  /** Forgets a sandbox (its history stays); with `onlyIf`, only while its record satisfies it. */
  delete(
    id: string,
    options: { event?: { kind: string; detail?: string }; onlyIf?: (current: SandboxRecord) => boolean } = {},
  ): boolean {
    return this.transaction(() => {
      const current = this.db.prepare("SELECT * FROM sandboxes WHERE id = ?").get(id) as Row | undefined;
      if (!current) return false;
      if (options.onlyIf && !options.onlyIf(fromRow(current))) return false;
      this.db.prepare("DELETE FROM sandboxes WHERE id = ?").run(id);
      this.addEvent(id, options.event?.kind ?? "removed", options.event?.detail);
      return true;
    });
  }

  /** A sandbox's history, oldest first. */
  events(id: string): SandboxEvent[] {
    const rows = this.db
      .prepare("SELECT sandbox_id, at, kind, detail FROM events WHERE sandbox_id = ? ORDER BY seq")
      .all(id) as { sandbox_id: string; at: number; kind: string; detail: string | null }[];
    return rows.map((r) => ({
      sandboxId: r.sandbox_id,
      at: new Date(r.at),
      kind: r.kind,
      ...(r.detail !== null ? { detail: r.detail } : {}),
    }));
  }

  /** Notes something that happened to a sandbox. */
  addEvent(id: string, kind: string, detail?: string): void {
    if (this.readOnly) throw new RegistryError(`the registry ${this.file} cannot be written now: ${this.readOnly}`);
    this.db
      .prepare("INSERT INTO events (sandbox_id, at, kind, detail) VALUES (?, ?, ?, ?)")
      .run(id, Date.now(), kind, detail ?? null);
  }

  close(): void {
    this.db.close();
  }
}
