import { randomBytes } from "node:crypto";
import {
  ImageNotFoundError,
  InvalidSandboxSpecError,
  type Sandboxes,
  type SandboxInfo,
  SandboxNotFoundError,
  type SandboxStats,
} from "@tether/host";
import type { TeamLimits } from "../auth/limits.js";
import { ApiError, BadRequestError, ConflictError, NotFoundError, NotImplementedError } from "../errors.js";
import type { Template, Templates } from "../templates/templates.js";
import { type LogQuery, readSandboxLogs, type SandboxLogRecord } from "./logs.js";
import type { ConnectBody, ListQuery, NewSandboxBody } from "./schemas.js";
import { E2B_VISIBLE_STATES, e2bState, factsOf, hostCpus, hostMemoryMB, type ServerFacts } from "./views.js";

/** E2B's default sandbox lifetime, seconds. */
export const DEFAULT_TIMEOUT_S = 300;

/** A page of a list and the token of the next one (undefined on the last page). */
export interface Page {
  items: SandboxInfo[];
  nextToken: string | undefined;
}

/** What `base` (the e2b SDK's default template) means when no template of that name is registered. */
export interface TemplateResolution {
  templates: Templates;
  /** The image `base` answers with when no template is named so. */
  baseImage?: string;
}

/** The sandboxes of `list` that `team` owns. */
function ofTeam(list: SandboxInfo[], team: string): SandboxInfo[] {
  return list.filter((s) => factsOf(s).team === team);
}

/**
 * E2B's sandbox operations over the host's Sandboxes, scoped to one team: another
 * team's sandbox is "not found", never "forbidden", so ids do not leak across teams.
 */
export class TeamSandboxes {
  constructor(
    private readonly sandboxes: Sandboxes,
    private readonly templates: TemplateResolution,
    private readonly limits: TeamLimits,
    /** Told when a sandbox stops answering (killed, paused), so the proxy drops what it cached. */
    private readonly unavailable: (id: string) => void = () => {},
    /** Told of a sandbox that is up (created, resumed), so the proxy reaches it without asking the engine. */
    private readonly ready: (info: SandboxInfo) => void = () => {},
  ) {}

  /** The team's sandbox, running or paused; NotFoundError otherwise. */
  async get(team: string, id: string): Promise<SandboxInfo> {
    const info = await this.sandboxes.get(id).catch((err) => {
      if (err instanceof SandboxNotFoundError) return undefined;
      throw err;
    });
    if (!info || info.id !== id || factsOf(info).team !== team || e2bState(info) === undefined) {
      throw new NotFoundError(`sandbox ${id} not found`);
    }
    return info;
  }

  /** The team's running and paused sandboxes. */
  async all(team: string): Promise<SandboxInfo[]> {
    return ofTeam(await this.sandboxes.list({ states: E2B_VISIBLE_STATES }), team);
  }

  /** Creates a sandbox from a template (or a local image) for the team. */
  async create(team: string, body: NewSandboxBody): Promise<SandboxInfo> {
    if ((body.network?.allowOut?.length ?? 0) > 0 || (body.network?.denyOut?.length ?? 0) > 0) {
      // Refused rather than ignored: a sandbox must not seem more (or less) confined than it is.
      throw new NotImplementedError("egress rules (network.allowOut / network.denyOut)");
    }
    if (body.autoResume?.enabled) throw new NotImplementedError("autoResume (resuming a paused sandbox on traffic)");
    if ((body.volumeMounts?.length ?? 0) > 0) throw new NotImplementedError("volume mounts");
    if (body.cpuCount !== undefined && body.cpuCount > hostCpus()) {
      throw new BadRequestError(`cpuCount ${body.cpuCount}: this host has ${hostCpus()} CPUs`);
    }
    const release = await this.limits.acquire(team);
    try {
      // From the registry: asking the engine about every sandbox on each create made n
      // concurrent creates cost n² container descriptions.
      const recorded = await this.sandboxes.recorded({ states: E2B_VISIBLE_STATES });
      this.limits.checkSandboxes(team, ofTeam(recorded, team).length);
      const template = this.template(body.templateID, team);
      // The body's resources (our extension) over the template's.
      const d = {
        ...template.defaults,
        ...(body.cpuCount !== undefined ? { cpus: body.cpuCount } : {}),
        ...(body.memoryMB !== undefined ? { memoryMB: body.memoryMB } : {}),
      };
      const network = body.allow_internet_access === true ? "bridge" : (d.network ?? "none");
      const facts: ServerFacts = {
        team,
        templateID: body.templateID,
        metadata: body.metadata ?? {},
        autoPause: body.autoPause ?? false,
        cpuCount: d.cpus !== undefined ? Math.max(1, Math.ceil(d.cpus)) : hostCpus(),
        memoryMB: d.memoryMB ?? hostMemoryMB(),
        allowInternetAccess: network === "bridge",
        ...(body.network?.allowPublicTraffic === false ? { trafficAccessToken: randomBytes(16).toString("hex") } : {}),
      };
      const timeoutMs = (body.timeout ?? DEFAULT_TIMEOUT_S) * 1000;
      const info = await this.sandboxes
        .create(template.image, {
          backend: d.backend ?? "docker",
          env: { ...d.env, ...body.envVars },
          ...(d.cpus !== undefined ? { cpus: d.cpus } : {}),
          ...(d.memoryMB !== undefined ? { memory: `${d.memoryMB}m` } : {}),
          ...(d.command ? { command: d.command } : {}),
          network,
          timeoutMs,
          // autoPause keeps the filesystem (a stop); otherwise E2B kills at timeout.
          onExpiry: body.autoPause ? "stop" : "remove",
          metadata: { e2b: facts },
        })
        .catch((err) => {
          if (err instanceof ImageNotFoundError) {
            throw new NotFoundError(`template ${body.templateID}: ${err.message}`);
          }
          if (err instanceof InvalidSandboxSpecError) throw new BadRequestError(err.message);
          throw err;
        });
      // Sandboxes.create counts the lifetime from when the sandbox is ready; the answer is
      // the proxy's too, so the first command needs no look-up.
      this.ready(info);
      return info;
    } finally {
      release();
    }
  }

  /**
   * Connects: a running sandbox's timeout is extended (never shortened) to now + timeout;
   * a paused one is resumed (frozen: thawed; stopped: started). `resumed` says which, for
   * the 200/201 E2B answers.
   */
  async connect(team: string, id: string, body: ConnectBody): Promise<{ info: SandboxInfo; resumed: boolean }> {
    let info = await this.get(team, id);
    let resumed = false;
    if (info.state === "paused") {
      await this.sandboxes.unpause(id);
      resumed = true;
    } else if (info.state === "stopped") {
      await this.sandboxes.start(id);
      resumed = true;
    }
    info = await this.extend(id, (body.timeout ?? DEFAULT_TIMEOUT_S) * 1000, resumed);
    this.ready(info);
    return { info, resumed };
  }

  /** E2B's setTimeout: expire at now + timeout, which may shorten the lifetime. */
  async setTimeout(team: string, id: string, timeoutS: number): Promise<void> {
    await this.get(team, id);
    await this.sandboxes.setTimeouts(id, { timeoutMs: Math.max(1, timeoutS) * 1000 });
  }

  async kill(team: string, id: string): Promise<void> {
    await this.get(team, id);
    this.unavailable(id);
    await this.sandboxes.remove(id);
  }

  /** `memory: true` (default) freezes every process; `memory: false` stops it, keeping the filesystem. */
  async pause(team: string, id: string, memory: boolean): Promise<void> {
    const info = await this.get(team, id);
    if (info.state !== "running") throw new ConflictError(`sandbox ${id} is already paused`);
    this.unavailable(id);
    if (memory) await this.sandboxes.pause(id);
    else await this.sandboxes.stop(id, { timeoutSeconds: 5 });
  }

  /**
   * The sandbox's metrics between `start` and `end` (unix seconds): one sample taken now
   * from the engine's cgroup stats, when now is in the range and the sandbox runs. No
   * history is kept (E2B keeps samples every few seconds).
   */
  async metrics(team: string, id: string, range: { start?: number; end?: number }): Promise<SandboxStats[]> {
    const info = await this.get(team, id);
    const now = Date.now() / 1000;
    if (info.state !== "running" || (range.start !== undefined && now < range.start - 1)) return [];
    if (range.end !== undefined && now > range.end + 1) return [];
    const stats = await this.sandboxes.stats(id);
    return stats ? [stats] : [];
  }

  /** The sandbox's log lines, paged by time (see readSandboxLogs); a paused or stopped sandbox's too. */
  async logs(team: string, id: string, query: LogQuery): Promise<SandboxLogRecord[]> {
    return readSandboxLogs(this.sandboxes, await this.get(team, id), query);
  }

  /**
   * Snapshots the sandbox into a template only this team can use, with the source
   * template's defaults and its backend. A container's filesystem is committed (paused
   * meanwhile) and memory is not kept: sandboxes made from it start the image's command
   * afresh. A VM's memory is kept (paused, written, resumed): they are forks, its
   * processes going on in each.
   */
  async snapshot(team: string, id: string, name?: string): Promise<Template> {
    const info = await this.get(team, id);
    if (name !== undefined && this.templates.templates.find(name, team)) {
      throw new ConflictError(`a template or snapshot named ${name} exists`);
    }
    const snapshotID = randomBytes(10).toString("hex");
    const tag = `tether-snapshot/${snapshotID}:latest`;
    // A VM is paused and restored by a new QEMU: connections the proxy holds to it end.
    if (info.backend === "vm") this.unavailable(info.id);
    await this.sandboxes.snapshot(info.id, tag);
    const source = this.templates.templates.find(factsOf(info).templateID, team);
    const defaults = { ...source?.defaults, ...(info.backend === "vm" ? { backend: "vm" as const } : {}) };
    return this.templates.templates.put(snapshotID, tag, defaults, {
      team,
      alias: name,
      sourceSandbox: info.id,
    });
  }

  /** A snapshot of the sandbox, then `count` sandboxes from it; each succeeds or fails alone. */
  async fork(
    team: string,
    id: string,
    body: { timeout?: number; count?: number },
  ): Promise<({ sandbox: SandboxInfo } | { error: { code: number; message: string } })[]> {
    const snapshot = await this.snapshot(team, id);
    const results = [];
    for (let i = 0; i < (body.count ?? 1); i++) {
      try {
        results.push({ sandbox: await this.create(team, { templateID: snapshot.name, timeout: body.timeout }) });
      } catch (err) {
        const code = err instanceof ApiError ? err.status : 500;
        results.push({ error: { code, message: (err as Error).message } });
      }
    }
    return results;
  }

  /** The team's snapshots, oldest first, optionally of one sandbox or by name, paged. */
  listSnapshots(
    team: string,
    query: { sandboxID?: string; name?: string; limit?: number; nextToken?: string },
  ): { items: Template[]; nextToken: string | undefined } {
    let items = this.templates.templates
      .snapshots(team)
      .filter(
        (t) =>
          (query.sandboxID === undefined || t.sourceSandbox === query.sandboxID) &&
          (query.name === undefined || t.alias === query.name),
      );
    if (query.nextToken) {
      const after = Buffer.from(query.nextToken, "base64url").toString();
      items = items.filter((t) => `${t.createdAt.getTime()}:${t.name}` > after);
    }
    const limit = query.limit ?? 100;
    const page = items.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page,
      nextToken:
        items.length > limit && last
          ? Buffer.from(`${last.createdAt.getTime()}:${last.name}`).toString("base64url")
          : undefined,
    };
  }

  /** Deletes one of the team's snapshots and its image; ConflictError while sandboxes still use it. */
  async deleteSnapshot(team: string, idOrName: string): Promise<void> {
    const snapshot = this.templates.templates.find(idOrName, team);
    if (!snapshot || snapshot.team !== team) throw new NotFoundError(`snapshot ${idOrName} not found`);
    if (!(await this.sandboxes.removeSnapshot(snapshot.image, snapshot.defaults.backend ?? "docker"))) {
      throw new ConflictError(`snapshot ${snapshot.name} is in use by sandboxes: kill them first`);
    }
    this.templates.templates.remove(snapshot.name);
  }

  /** A page of the team's sandboxes, filtered and ordered as E2B's list does. */
  async list(team: string, query: ListQuery): Promise<Page> {
    const states = new Set(query.state);
    const order = query.order ?? "desc";
    let items = (await this.all(team)).filter((s) => {
      const facts = factsOf(s);
      const state = e2bState(s);
      if (!state || (states.size > 0 && !states.has(state))) return false;
      if (query.template && facts.templateID !== query.template) return false;
      if (query.startedAfter && s.createdAt <= query.startedAfter) return false;
      for (const [k, v] of Object.entries(query.metadata ?? {})) if (facts.metadata[k] !== v) return false;
      return true;
    });
    const key = (s: SandboxInfo) => `${String(s.createdAt.getTime()).padStart(15, "0")}:${s.id}`;
    items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (order === "asc" ? 1 : -1));
    if (query.nextToken) {
      const after = Buffer.from(query.nextToken, "base64url").toString();
      items = items.filter((s) => (order === "asc" ? key(s) > after : key(s) < after));
    }
    const limit = query.limit ?? 100;
    const page = items.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page,
      nextToken: items.length > limit && last ? Buffer.from(key(last)).toString("base64url") : undefined,
    };
  }

  /** Sets the expiry to now + ms unless it is already later (or always, after a resume). */
  private async extend(id: string, ms: number, always: boolean): Promise<SandboxInfo> {
    const info = await this.sandboxes.get(id);
    const wanted = Date.now() + ms;
    if (always || !info.expiresAt || info.expiresAt.getTime() < wanted) {
      return this.sandboxes.setTimeouts(id, { timeoutMs: ms });
    }
    return info;
  }

  /** The template a create names: a registered one, `base` as configured, else a local image by that name. */
  private template(name: string, team: string): Template {
    const found = this.templates.templates.find(name, team);
    if (found) return found;
    if (name === "base" && this.templates.baseImage) {
      return { name, image: this.templates.baseImage, defaults: {}, createdAt: new Date(0) };
    }
    // Any local image works as a template id without registering it.
    return { name, image: name, defaults: {}, createdAt: new Date(0) };
  }
}
