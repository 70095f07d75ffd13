import { Agent } from "../agent.js";
import { TetherError } from "../errors.js";
import { field, Tether, type TetherOptions } from "./tether.js";

/** The port tetherd listens on inside a sandbox, which the server's proxy routes by. */
const AGENT_PORT = 49983;

/** Which server and key: a shared `Tether`, or what makes one (default: TETHER_SERVER, TETHER_API_KEY). */
export type ServerOptions = TetherOptions & { tether?: Tether };

export interface SandboxCreateOptions extends ServerOptions {
  /** A template name or id of the server's (`tether template`); default the server's `base`. */
  template?: string;
  /** Killed (or paused, with `autoPause`) this long after it is ready; default the server's (5 min). */
  timeoutMs?: number;
  /** Yours, to find it again (`Sandbox.list({ metadata })`). */
  metadata?: Record<string, string>;
  /** Environment of every command in it. */
  envs?: Record<string, string>;
  /** Pause instead of kill when the timeout passes. */
  autoPause?: boolean;
}

export interface SandboxConnectOptions extends ServerOptions {
  /** The sandbox's new timeout from now (a paused one is resumed). */
  timeoutMs?: number;
}

export type SandboxState = "running" | "paused";

export interface SandboxListOptions extends ServerOptions {
  /** Only sandboxes whose metadata has all these pairs. */
  metadata?: Record<string, string>;
  /** Default both. */
  state?: SandboxState[];
  /** Page size, 1..100; default the server's (100). */
  limit?: number;
  /** From the previous page. */
  nextToken?: string;
}

/** A sandbox as the server reports it. */
export interface SandboxInfo {
  sandboxId: string;
  templateId: string;
  /** The template's name, when it was named. */
  name?: string;
  state: SandboxState;
  metadata: Record<string, string>;
  startedAt: Date;
  /** When the timeout runs out. */
  endAt: Date;
  cpuCount: number;
  memoryMB: number;
}

export interface SandboxPage {
  sandboxes: SandboxInfo[];
  /** For the next page; undefined on the last. */
  nextToken?: string;
}

function tetherOf(options: ServerOptions): Tether {
  return options.tether ?? new Tether(options);
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function infoOf(body: unknown): SandboxInfo {
  const state = field<string>(body, "state", "string");
  if (state !== "running" && state !== "paused")
    throw new TetherError(`the server says a sandbox is ${state}, a state this SDK does not know`);
  return {
    sandboxId: field<string>(body, "sandboxID", "string"),
    templateId: field<string>(body, "templateID", "string"),
    name: field<string>(body, "alias", "string", true),
    state,
    metadata: field<Record<string, string>>(body, "metadata", "object", true) ?? {},
    startedAt: new Date(field<string>(body, "startedAt", "string")),
    endAt: new Date(field<string>(body, "endAt", "string")),
    cpuCount: field<number>(body, "cpuCount", "number"),
    memoryMB: field<number>(body, "memoryMB", "number"),
  };
}

/**
 * A sandbox of a tether serve: the agent's surface (`commands`, `files`, `pty`, `ports`,
 * `tunnel`) reached through the server's proxy with the sandbox's agent token, plus its
 * lifecycle through the server's API. The same server and key as E2B's SDK would use, so
 * the e2b package is never needed.
 */
export class Sandbox extends Agent {
  readonly sandboxId: string;
  readonly templateId: string;
  readonly tether: Tether;

  private constructor(tether: Tether, body: unknown) {
    const sandboxId = field<string>(body, "sandboxID", "string");
    const accessToken = field<string>(body, "envdAccessToken", "string", true);
    super({
      url: tether.apiUrl,
      accessToken,
      // The proxy routes on these (our SDK speaks HTTP/2 with prior knowledge; the server accepts it).
      headers: { "e2b-sandbox-id": sandboxId, "e2b-sandbox-port": String(AGENT_PORT) },
    });
    this.sandboxId = sandboxId;
    this.templateId = field<string>(body, "templateID", "string");
    this.tether = tether;
  }

  /** Creates a sandbox and resolves once its agent answers. 429s are waited out (see `rateLimitRetries`). */
  static async create(options: SandboxCreateOptions = {}): Promise<Sandbox> {
    const tether = tetherOf(options);
    const body: Record<string, unknown> = { templateID: options.template ?? "base" };
    if (options.timeoutMs !== undefined) body.timeout = seconds(options.timeoutMs);
    if (options.metadata) body.metadata = options.metadata;
    if (options.envs) body.envVars = options.envs;
    if (options.autoPause !== undefined) body.autoPause = options.autoPause;
    const answer = await tether.requestPatiently("POST", "/sandboxes", { body });
    return Sandbox.ready(tether, answer.body);
  }

  /** A sandbox that exists: resumed when paused, its timeout reset when `timeoutMs` is given. */
  static async connect(sandboxId: string, options: SandboxConnectOptions = {}): Promise<Sandbox> {
    const tether = tetherOf(options);
    const body = options.timeoutMs === undefined ? {} : { timeout: seconds(options.timeoutMs) };
    const answer = await tether.requestPatiently("POST", `/sandboxes/${encodeURIComponent(sandboxId)}/connect`, {
      body,
      sandboxId,
    });
    return Sandbox.ready(tether, answer.body);
  }

  /** One page of this team's sandboxes. */
  static async list(options: SandboxListOptions = {}): Promise<SandboxPage> {
    const tether = tetherOf(options);
    const query = new URLSearchParams();
    // The API wants metadata as one query string of its own (E2B's encoding).
    if (options.metadata) query.set("metadata", new URLSearchParams(options.metadata).toString());
    if (options.state) query.set("state", options.state.join(","));
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.nextToken) query.set("nextToken", options.nextToken);
    const answer = await tether.request("GET", `/v2/sandboxes?${query}`);
    if (!Array.isArray(answer.body)) throw new TetherError("the server's sandbox list is not an array");
    return { sandboxes: answer.body.map(infoOf), nextToken: answer.headers.get("x-next-token") || undefined };
  }

  /** Every page of `list`, one sandbox at a time. */
  static async *listAll(options: Omit<SandboxListOptions, "nextToken"> = {}): AsyncGenerator<SandboxInfo> {
    let nextToken: string | undefined;
    do {
      const page = await Sandbox.list({ ...options, nextToken });
      yield* page.sandboxes;
      nextToken = page.nextToken;
    } while (nextToken);
  }

  /** Removes a sandbox by id; SandboxNotFoundError when there is none. */
  static async kill(sandboxId: string, options: ServerOptions = {}): Promise<void> {
    await tetherOf(options).request("DELETE", `/sandboxes/${encodeURIComponent(sandboxId)}`, { sandboxId });
  }

  /** What the server knows of a sandbox. */
  static async getInfo(sandboxId: string, options: ServerOptions = {}): Promise<SandboxInfo> {
    const answer = await tetherOf(options).request("GET", `/sandboxes/${encodeURIComponent(sandboxId)}`, {
      sandboxId,
    });
    return infoOf(answer.body);
  }

  private static async ready(tether: Tether, body: unknown): Promise<Sandbox> {
    const sandbox = new Sandbox(tether, body);
    try {
      await sandbox.health();
    } catch (err) {
      sandbox.close();
      throw err;
    }
    return sandbox;
  }

  /** Removes the sandbox and closes this client's connection. */
  async kill(): Promise<void> {
    try {
      await Sandbox.kill(this.sandboxId, { tether: this.tether });
    } finally {
      this.close();
    }
  }

  /** Pauses the sandbox (its processes stop, its files stay); `Sandbox.connect(id)` resumes it. */
  async pause(): Promise<void> {
    const path = `/sandboxes/${encodeURIComponent(this.sandboxId)}/pause`;
    try {
      await this.tether.request("POST", path, { body: {}, sandboxId: this.sandboxId });
    } finally {
      this.close();
    }
  }

  /** The sandbox now ends `timeoutMs` from now (extends or shortens it). */
  async setTimeout(timeoutMs: number): Promise<void> {
    const path = `/sandboxes/${encodeURIComponent(this.sandboxId)}/timeout`;
    await this.tether.request("POST", path, { body: { timeout: seconds(timeoutMs) }, sandboxId: this.sandboxId });
  }

  getInfo(): Promise<SandboxInfo> {
    return Sandbox.getInfo(this.sandboxId, { tether: this.tether });
  }
}
