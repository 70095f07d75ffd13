import { accessSync, constants, copyFileSync, existsSync, mkdtempSync, renameSync, rmSync, statfsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { RegistryDamagedError, RegistryError } from "../errors.js";
import { makeHome } from "../home.js";
import { MIGRATIONS, type Migration } from "./migrations.js";

/** How long a writer waits for another `tether` process's transaction before giving up. */
const BUSY_TIMEOUT_MS = 15_000;

/**
 * Opens (creating if needed) the registry database: WAL, so readers never wait for the
 * writer; a busy timeout, so concurrent `tether` processes queue instead of failing;
 * then brings the schema up to date.
 */
export function openDatabase(file: string, migrations: readonly Migration[] = MIGRATIONS): Database.Database {
  makeHome(path.dirname(file));
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    throw registryError(file, "open", err);
  }
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    migrate(db, migrations);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof RegistryError) throw err;
    throw registryError(file, "prepare", err);
  }
}

/** SQLite's error code (SQLITE_FULL, SQLITE_IOERR_SHMSIZE ...) or errno code of `err`. */
function codeOf(err: unknown): string {
  return (err as { code?: string } | undefined)?.code ?? "";
}

/** True for an error that says the file is not a sound database. */
export function isDamage(err: unknown): boolean {
  return /^SQLITE_(CORRUPT|NOTADB)/.test(codeOf(err));
}

/**
 * Why the registry's directory cannot be written, in plain words, when that is what `err`
 * is: SQLite says "disk I/O error" when it cannot grow its shared-memory file on a full disk.
 */
export function cannotWrite(file: string, err: unknown): string | undefined {
  const code = codeOf(err);
  if (!/^SQLITE_(FULL|IOERR|READONLY|CANTOPEN)|^(ENOSPC|EROFS|EACCES|EPERM|EDQUOT)$/.test(code)) return undefined;
  const dir = path.dirname(file);
  let full = code === "SQLITE_FULL" || code === "ENOSPC" || code === "EDQUOT";
  try {
    full ||= statfsSync(dir).bavail === 0;
  } catch {
    // The directory's file system cannot be asked: say what SQLite said.
  }
  if (full) return `${dir} is full (no space left on device)`;
  if (/READONLY|EROFS|EACCES|EPERM/.test(code)) return `${dir} cannot be written (read-only)`;
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return `${dir} cannot be written (read-only)`;
  }
  return undefined;
}

/** A RegistryError for a failed open or prepare that says plainly what is wrong. */
function registryError(file: string, step: "open" | "prepare", err: unknown): RegistryError {
  const message = (err as Error).message;
  if (isDamage(err)) return new RegistryDamagedError(file, message, { cause: err });
  const why = cannotWrite(file, err);
  return new RegistryError(`cannot ${step} the registry ${file}: ${why ? `${why}; SQLite: ${message}` : message}`, {
    cause: err,
  });
}

/**
 * A private copy of the registry (with its WAL), opened there: for reading a registry whose
 * directory cannot be written (full, read-only), where SQLite cannot make the shared-memory
 * file it needs even to read. The copy goes under the system's temporary directory and is
 * removed at once (the open handle keeps it readable).
 */
export function openSnapshot(file: string): Database.Database {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-registry-"));
  try {
    const copy = path.join(dir, path.basename(file));
    copyFileSync(file, copy);
    if (existsSync(`${file}-wal`)) copyFileSync(`${file}-wal`, `${copy}-wal`);
    const db = new Database(copy, { fileMustExist: true });
    db.pragma("journal_mode = DELETE");
    return db;
  } catch (err) {
    throw registryError(file, "open", err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Whether the registry is sound: it opens, its schema is current and SQLite's quick check
 * passes. Returns what is wrong, or undefined.
 */
export function registryDamage(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  let db: Database.Database | undefined;
  try {
    db = openDatabase(file);
    const rows = db.pragma("quick_check") as { quick_check: string }[];
    const problems = rows.map((r) => r.quick_check).filter((r) => r !== "ok");
    return problems.length > 0 ? problems.slice(0, 3).join("; ") : undefined;
  } catch (err) {
    if (err instanceof RegistryDamagedError) return err.reason;
    if (isDamage((err as Error).cause ?? err)) return (err as Error).message;
    throw err;
  } finally {
    db?.close();
  }
}

/** Moves a damaged registry (and its WAL and shared-memory files) aside; returns the backup's path. */
export function setRegistryAside(file: string, now = new Date()): string {
  const backup = `${file}.damaged-${now.toISOString().replace(/[:.]/g, "-")}`;
  for (const suffix of ["-wal", "-shm"]) {
    if (existsSync(`${file}${suffix}`)) renameSync(`${file}${suffix}`, `${backup}${suffix}`);
  }
  renameSync(file, backup);
  return backup;
}

/** The schema version the database is at (0 when new). */
export function schemaVersion(db: Database.Database): number {
  const row = db.prepare("SELECT max(version) AS version FROM schema_migrations").get() as { version: number | null };
  return row.version ?? 0;
}

/**
 * Applies the migrations the database lacks, in order, each in its own BEGIN IMMEDIATE
 * transaction that re-checks the version first: of several processes opening a fresh
 * database at once, one applies each step and the others see it done.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): void {
  db.exec(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
  );
  const latest = migrations.at(-1)?.version ?? 0;
  const current = schemaVersion(db);
  if (current > latest) {
    throw new RegistryError(
      `the registry's schema is at version ${current}, newer than this tether knows (${latest}): upgrade tether`,
    );
  }
  for (const migration of migrations) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      if (schemaVersion(db) >= migration.version) return;
      db.exec(migration.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
        migration.version,
        migration.name,
        Date.now(),
      );
    }).immediate();
  }
}
