import path from "node:path";
import { makeHome, REGISTRY_FILE } from "@tether/host";
import Database from "better-sqlite3";

/** One step of the server's own schema, applied once, in order. */
interface ServerMigration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The server's tables live in the registry's database file (one file to back up, and the
 * CLI's `tether keys` sees what the server sees) but are versioned apart from the host's
 * schema, in `server_migrations`: the host's migrations and ours evolve independently.
 * Append only; never edit a released step.
 */
const SERVER_MIGRATIONS: readonly ServerMigration[] = [
  {
    version: 1,
    name: "api keys and templates",
    sql: `
      -- A key is shown once; only its sha256 is kept (keys are 160 random bits, so a plain
      -- hash is as strong as a slow one). The prefix lets people tell keys apart in 'ls'.
      CREATE TABLE server_api_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        team TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
      );
      CREATE TABLE server_templates (
        name TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        -- JSON: cpus, memory, env, command, readyCommand, network
        defaults TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: "snapshots",
    sql: `
      -- A snapshot is a template of one team (NULL: every team's), made from a sandbox,
      -- found by its id or its name.
      ALTER TABLE server_templates ADD COLUMN team TEXT;
      ALTER TABLE server_templates ADD COLUMN alias TEXT;
      ALTER TABLE server_templates ADD COLUMN source_sandbox TEXT;
    `,
  },
];

/** Opens the registry database of a TETHER_HOME for the server's tables, migrating them. */
export function openServerDatabase(home: string): Database.Database {
  makeHome(home);
  const db = new Database(path.join(home, REGISTRY_FILE), { timeout: 15_000 });
  db.pragma("busy_timeout = 15000");
  db.pragma("journal_mode = WAL");
  db.exec(
    "CREATE TABLE IF NOT EXISTS server_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
  );
  const current = () =>
    (db.prepare("SELECT max(version) AS v FROM server_migrations").get() as { v: number | null }).v ?? 0;
  for (const migration of SERVER_MIGRATIONS) {
    if (migration.version <= current()) continue;
    db.transaction(() => {
      if (current() >= migration.version) return;
      db.exec(migration.sql);
      db.prepare("INSERT INTO server_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
        migration.version,
        migration.name,
        Date.now(),
      );
    }).immediate();
  }
  return db;
}
