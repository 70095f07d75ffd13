import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { RegistryError } from "../errors.js";
import { MIGRATIONS, type Migration } from "./migrations.js";

/** How long a writer waits for another `tether` process's transaction before giving up. */
const BUSY_TIMEOUT_MS = 15_000;

/**
 * Opens (creating if needed) the registry database: WAL, so readers never wait for the
 * writer; a busy timeout, so concurrent `tether` processes queue instead of failing;
 * then brings the schema up to date.
 */
export function openDatabase(file: string, migrations: readonly Migration[] = MIGRATIONS): Database.Database {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    throw new RegistryError(`cannot open the registry ${file}: ${(err as Error).message}`, { cause: err });
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
    throw new RegistryError(`cannot prepare the registry ${file}: ${(err as Error).message}`, { cause: err });
  }
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
