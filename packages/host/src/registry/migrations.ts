/** One step of the registry's schema; applied once, in order, each in its own transaction. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The registry's schema, oldest first. Never edit a released migration: add the next one.
 * Times are milliseconds since the epoch; labels, metadata and resources are JSON objects.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "sandboxes",
    sql: `
      CREATE TABLE sandboxes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        backend TEXT NOT NULL,
        image TEXT NOT NULL,
        state TEXT NOT NULL
          CHECK (state IN ('creating', 'running', 'paused', 'stopped', 'error', 'archived')),
        error TEXT,
        labels TEXT NOT NULL DEFAULT '{}',
        metadata TEXT NOT NULL DEFAULT '{}',
        resources TEXT NOT NULL DEFAULT '{}',
        backend_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        timeout_ms INTEGER,
        expires_at INTEGER,
        idle_timeout_ms INTEGER,
        on_expiry TEXT NOT NULL DEFAULT 'stop' CHECK (on_expiry IN ('stop', 'remove')),
        creator_pid INTEGER,
        creator_start TEXT,
        archived_at INTEGER,
        archive_path TEXT
      );
      -- Names are unique among sandboxes that still exist.
      CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes (name) WHERE state <> 'archived';
      CREATE INDEX sandboxes_state ON sandboxes (state);
    `,
  },
  {
    version: 2,
    name: "events",
    sql: `
      -- What happened to each sandbox, for people asking later why it is gone or stopped.
      CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT
      );
      CREATE INDEX events_sandbox ON events (sandbox_id, seq);
    `,
  },
];
