import { type CreateOptions, SandboxCopy, type SandboxFilter, type SandboxInfo } from "@tether/host";
import { type Agent, Sandbox, type SandboxInfo as ServerSandboxInfo, Tether } from "@tether/sdk";
import { NotThroughServerError } from "./errors.js";
import { refuseLocalSandboxes, sandboxes } from "./sandboxes.js";

/**
 * Where the CLI's sandboxes are: this machine's registry, or a tether serve (`--server
 * URL` / TETHER_SERVER, with TETHER_API_KEY). The commands that work both ways (ls,
 * create, exec, cp, rm, pause, unpause) go through this; the others use `sandboxes()`, which
 * refuses when a server is set.
 */
export interface SandboxPlace {
  list(filter: SandboxFilter): Promise<SandboxInfo[]>;
  create(image: string | undefined, options: CreateOptions): Promise<SandboxInfo>;
  get(id: string): Promise<SandboxInfo>;
  remove(id: string): Promise<void>;
  pause(id: string): Promise<void>;
  unpause(id: string): Promise<void>;
  connect(id: string, options?: { user?: string }): Promise<Agent>;
  /** What `tether cp` copies with. */
  copier(id: string): Promise<SandboxCopy>;
}

const local: SandboxPlace = {
  list: (filter) => sandboxes().list(filter),
  create: (image, options) => sandboxes().create(image, options),
  get: (id) => sandboxes().get(id),
  remove: (id) => sandboxes().remove(id),
  pause: (id) => sandboxes().pause(id),
  unpause: (id) => sandboxes().unpause(id),
  connect: (id, options) => sandboxes().connect(id, options),
  copier: (id) => sandboxes().copier(id),
};

/** What `tether create` may ask of a server: the rest a template fixes. */
const REMOTE_CREATE_OPTIONS = new Set(["env", "labels", "timeoutMs"]);

/** A tether serve's sandboxes, through our SDK; what the API has no word for is refused. */
export class RemotePlace implements SandboxPlace {
  constructor(readonly tether: Tether) {}

  async list(filter: SandboxFilter): Promise<SandboxInfo[]> {
    const wanted = filter.states?.filter((s) => s === "running" || s === "paused");
    // Other states do not exist on a server: asking only for them finds nothing.
    if (filter.states && wanted?.length === 0) return [];
    const found: SandboxInfo[] = [];
    for await (const s of Sandbox.listAll({ tether: this.tether, metadata: filter.labels, state: wanted })) {
      found.push(hostView(s));
    }
    return found;
  }

  async create(image: string | undefined, options: CreateOptions): Promise<SandboxInfo> {
    if (image === undefined)
      throw new NotThroughServerError("a server makes sandboxes from its templates: give a template name");
    const refused = Object.keys(options).filter(
      (k) => !REMOTE_CREATE_OPTIONS.has(k) && options[k as keyof CreateOptions] !== undefined,
    );
    if (refused.length > 0) {
      throw new NotThroughServerError(`${refused.join(", ")} cannot be set through a server: its template fixes them`);
    }
    const sandbox = await Sandbox.create({
      tether: this.tether,
      template: image,
      envs: options.env,
      metadata: options.labels,
      timeoutMs: options.timeoutMs,
    });
    sandbox.close();
    return this.get(sandbox.sandboxId);
  }

  async get(id: string): Promise<SandboxInfo> {
    return hostView(await Sandbox.getInfo(id, { tether: this.tether }));
  }

  remove(id: string): Promise<void> {
    return Sandbox.kill(id, { tether: this.tether });
  }

  async pause(id: string): Promise<void> {
    await this.tether.request("POST", `/sandboxes/${encodeURIComponent(id)}/pause`, { body: {}, sandboxId: id });
  }

  async unpause(id: string): Promise<void> {
    (await Sandbox.connect(id, { tether: this.tether })).close();
  }

  /** Files stream through the agent's API: no directory is shared with a remote sandbox. */
  async copier(id: string): Promise<SandboxCopy> {
    return new SandboxCopy(await this.connect(id));
  }

  async connect(id: string, options: { user?: string } = {}): Promise<Agent> {
    if (options.user !== undefined)
      throw new NotThroughServerError("a default user cannot be set through a server: pass it per command");
    return Sandbox.connect(id, { tether: this.tether });
  }
}

/** A server's sandbox as the CLI shows the host's: its template is its image, its metadata its labels. */
function hostView(s: ServerSandboxInfo): SandboxInfo {
  return {
    id: s.sandboxId,
    name: s.name ?? s.sandboxId,
    backend: "server",
    backendId: s.sandboxId,
    image: s.templateId,
    state: s.state,
    labels: s.metadata,
    createdAt: s.startedAt,
    expiresAt: s.endAt,
  };
}

let current: SandboxPlace = local;

/** Points the CLI at a server (called once, before the command runs). */
export function useServer(apiUrl: string, apiKey: string | undefined, command: string): void {
  current = new RemotePlace(new Tether({ apiUrl, apiKey }));
  refuseLocalSandboxes(command);
}

/** Where this command's sandboxes are. */
export function place(): SandboxPlace {
  return current;
}
