import type Database from "better-sqlite3";
import { z } from "zod";
import { BadRequestError, TemplateNotFoundError } from "../errors.js";

/** The backends a template may run its sandboxes in: those that boot an image. */
export const TEMPLATE_BACKENDS = ["docker", "vm"] as const;

/** What a template gives every sandbox made from it, unless the create request says otherwise. */
export const TemplateDefaults = z.strictObject({
  /** CPUs, e.g. 1 or 0.5. */
  cpus: z.number().positive().optional(),
  /** Memory in MiB. */
  memoryMB: z.number().int().positive().optional(),
  env: z.record(z.string(), z.string()).optional(),
  /** Replaces the image's entrypoint + cmd as the sandbox's supervised command. */
  command: z.array(z.string()).min(1).optional(),
  /** "none" (default: the proxy reaches ports through the agent's tunnel) or "bridge". */
  network: z.enum(["none", "bridge"]).optional(),
  /**
   * What its sandboxes run in: "docker" (default, containers) or "vm" (QEMU microVMs of the
   * same image: pause keeps their memory, a snapshot is a memory snapshot, a fork restores it).
   */
  backend: z.enum(TEMPLATE_BACKENDS).optional(),
});
export type TemplateDefaults = z.infer<typeof TemplateDefaults>;

export interface Template {
  name: string;
  /** Any image the engine has locally: nothing is rebuilt or pulled. */
  image: string;
  defaults: TemplateDefaults;
  createdAt: Date;
  /** Set for a snapshot: the one team that may use it (else every team may). */
  team?: string;
  /** A snapshot's name, beside its id. */
  alias?: string;
  /** The sandbox a snapshot was taken of. */
  sourceSandbox?: string;
}

/** Who owns a template and where it came from (snapshots). */
export interface TemplateOrigin {
  team?: string;
  alias?: string;
  sourceSandbox?: string;
}

interface Row {
  name: string;
  image: string;
  defaults: string;
  created_at: number;
  team: string | null;
  alias: string | null;
  source_sandbox: string | null;
}

/** Template names are E2B template ids and aliases: lower-case, so they fit in a host name. */
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

function templateOf(row: Row): Template {
  return {
    name: row.name,
    image: row.image,
    defaults: TemplateDefaults.parse(JSON.parse(row.defaults)),
    createdAt: new Date(row.created_at),
    ...(row.team !== null ? { team: row.team } : {}),
    ...(row.alias !== null ? { alias: row.alias } : {}),
    ...(row.source_sandbox !== null ? { sourceSandbox: row.source_sandbox } : {}),
  };
}

/**
 * Templates: a name (the `templateID` or alias E2B clients send) for an image plus
 * defaults. Any local image becomes a template without a rebuild: the agent is mounted
 * into the container, not baked into the image.
 */
export class Templates {
  constructor(private readonly db: Database.Database) {}

  /** Registers (or replaces) a template. */
  put(name: string, image: string, defaults: TemplateDefaults = {}, origin: TemplateOrigin = {}): Template {
    if (!NAME.test(name)) {
      throw new BadRequestError(`template name ${JSON.stringify(name)}: lower-case letters, digits, . _ - only`);
    }
    if (!image) throw new BadRequestError("a template needs an image");
    const parsed = TemplateDefaults.safeParse(defaults);
    if (!parsed.success) throw new BadRequestError(`template ${name}: ${z.prettifyError(parsed.error)}`);
    const row: Row = {
      name,
      image,
      defaults: JSON.stringify(parsed.data),
      created_at: Date.now(),
      team: origin.team ?? null,
      alias: origin.alias ?? null,
      source_sandbox: origin.sourceSandbox ?? null,
    };
    this.db
      .prepare(
        "INSERT INTO server_templates (name, image, defaults, created_at, team, alias, source_sandbox) " +
          "VALUES (@name, @image, @defaults, @created_at, @team, @alias, @source_sandbox) " +
          "ON CONFLICT (name) DO UPDATE SET image = excluded.image, defaults = excluded.defaults",
      )
      .run(row);
    return this.get(name);
  }

  /** The template by name; TemplateNotFoundError when there is none. */
  get(name: string): Template {
    const row = this.db.prepare("SELECT * FROM server_templates WHERE name = ?").get(name) as Row | undefined;
    if (!row) throw new TemplateNotFoundError(name);
    return templateOf(row);
  }

  /** The template by name as `team` sees it: every team's templates, and its own snapshots (by id or name). */
  find(name: string, team?: string): Template | undefined {
    const row = this.db
      .prepare(
        "SELECT * FROM server_templates WHERE (team IS NULL AND name = ?) OR (team = ? AND (name = ? OR alias = ?)) " +
          "ORDER BY team IS NULL LIMIT 1",
      )
      .get(name, team ?? null, name, name) as Row | undefined;
    return row ? templateOf(row) : undefined;
  }

  /** A team's snapshots, oldest first. */
  snapshots(team: string): Template[] {
    return (
      this.db.prepare("SELECT * FROM server_templates WHERE team = ? ORDER BY created_at, name").all(team) as Row[]
    ).map(templateOf);
  }

  list(): Template[] {
    return (this.db.prepare("SELECT * FROM server_templates ORDER BY name").all() as Row[]).map(templateOf);
  }

  /** Removes a template (sandboxes made from it keep running); false when there was none. */
  remove(name: string): boolean {
    return this.db.prepare("DELETE FROM server_templates WHERE name = ?").run(name).changes > 0;
  }
}
