import { createHash, randomBytes } from "node:crypto";
import type Database from "better-sqlite3";
import { BadRequestError } from "../errors.js";

/** The team a key belongs to when none is named, and the owner of sandboxes made by the CLI. */
export const DEFAULT_TEAM = "default";

/** One key as listed: never the key itself, which exists only in the caller's hands. */
export interface ApiKeyInfo {
  id: string;
  /** The key's first characters, to tell keys apart. */
  prefix: string;
  team: string;
  name: string;
  createdAt: Date;
  lastUsedAt?: Date;
}

/** A key just minted: `key` is shown once and not kept. */
export interface NewApiKey extends ApiKeyInfo {
  key: string;
}

interface Row {
  id: string;
  prefix: string;
  team: string;
  name: string;
  created_at: number;
  last_used_at: number | null;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function hashOf(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

function infoOf(row: Row): ApiKeyInfo {
  return {
    id: row.id,
    prefix: row.prefix,
    team: row.team,
    name: row.name,
    createdAt: new Date(row.created_at),
    ...(row.last_used_at !== null ? { lastUsedAt: new Date(row.last_used_at) } : {}),
  };
}

/**
 * API keys and the teams they belong to. A key is `e2b_` + 40 hex digits (160 random
 * bits), the shape E2B's Python SDK insists on; only its sha256 is stored.
 */
export class ApiKeys {
  constructor(private readonly db: Database.Database) {}

  /** Mints a key for a team; the returned `key` is the only copy. */
  create(options: { team?: string; name?: string } = {}): NewApiKey {
    const team = options.team ?? DEFAULT_TEAM;
    if (!NAME.test(team)) throw new BadRequestError(`team ${JSON.stringify(team)}: letters, digits, . _ - only`);
    const key = `e2b_${randomBytes(20).toString("hex")}`;
    const id = randomBytes(6).toString("hex");
    const name = options.name ?? `key-${id}`;
    const row: Row = { id, prefix: key.slice(0, 12), team, name, created_at: Date.now(), last_used_at: null };
    this.db
      .prepare(
        "INSERT INTO server_api_keys (id, hash, prefix, team, name, created_at) VALUES (@id, @hash, @prefix, @team, @name, @created_at)",
      )
      .run({ id, hash: hashOf(key), prefix: row.prefix, team, name, created_at: row.created_at });
    return { ...infoOf(row), key };
  }

  list(): ApiKeyInfo[] {
    return (this.db.prepare("SELECT * FROM server_api_keys ORDER BY created_at").all() as Row[]).map(infoOf);
  }

  /** Revokes a key by id, name or prefix; false when none matched. */
  remove(which: string): boolean {
    const result = this.db
      .prepare("DELETE FROM server_api_keys WHERE id = ? OR name = ? OR prefix = ?")
      .run(which, which, which);
    return result.changes > 0;
  }

  /** The key's record when the key is one we minted and still valid. */
  verify(key: string | undefined): ApiKeyInfo | undefined {
    if (!key) return undefined;
    const row = this.db.prepare("SELECT * FROM server_api_keys WHERE hash = ?").get(hashOf(key)) as Row | undefined;
    return row ? infoOf(row) : undefined;
  }
}
