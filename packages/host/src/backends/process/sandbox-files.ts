import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { ProcessIdentity } from "../../process-identity.js";
import { isValidSandboxId, SandboxDir } from "../../sandbox-dir.js";

/** What the supervisor starts, written by the backend before it starts the supervisor. */
export interface LaunchPlan {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /**
   * Also serve `socket` (mode 0600) and pipe each connection to 127.0.0.1:`port`: the vm
   * backend's agent listens on a port QEMU forwards, and the host's clients speak to a
   * sandbox's agent through its unix socket, whatever the backend.
   */
  relay?: { socket: string; port: number };
}

/** How the agent ended, as `exit.json` has it. */
export interface ExitRecord {
  code: number | null;
  signal: string | null;
  at: number;
  /** Set when the agent could not be started at all. */
  error?: string;
}

/** `supervisor.json`: the supervisor (pid and start time) and its child's pid (tetherd, or bwrap). */
export interface SupervisorRecord {
  pid: number;
  start: string;
  agentPid: number;
  /** The agent's identity: it can outlive a supervisor that died, and must still be found and killed. */
  agent?: ProcessIdentity;
}

/** The sandbox as created, `sandbox.json`: enough to list it, and to start it again. */
export interface SandboxMeta {
  id: string;
  name: string;
  backend: string;
  image: string;
  labels: Record<string, string>;
  createdAt: number;
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  network: "none" | "bridge";
  mounts: { source: string; target: string; readOnly?: boolean }[];
  command?: string[];
}

export const META_FILE = "sandbox.json";
export const LAUNCH_FILE = "launch.json";
export const OUTPUT_FILE = "output.log";
export const EXIT_FILE = "exit.json";
export const SUPERVISOR_FILE = "supervisor.json";
/** Present while the sandbox's processes are frozen with SIGSTOP. */
export const PAUSED_FILE = "paused";

/**
 * A `local` or `bwrap` sandbox's host directory: SandboxDir's token and run/, plus
 * work/ (the sandbox's default working directory) and the files above.
 */
export class ProcessSandboxDir extends SandboxDir {
  get workDir(): string {
    return path.join(this.path, "work");
  }

  file(name: string): string {
    return path.join(this.path, name);
  }

  async readJson<T>(name: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(this.file(name), "utf8")) as T;
    } catch {
      return undefined;
    }
  }

  async writeJson(name: string, value: unknown): Promise<void> {
    await writeFile(this.file(name), `${JSON.stringify(value)}\n`, { mode: 0o600 });
  }

  async has(name: string): Promise<boolean> {
    return (await stat(this.file(name)).catch(() => undefined)) !== undefined;
  }

  async removeFile(name: string): Promise<void> {
    await rm(this.file(name), { force: true });
  }
}

/**
 * One backend's sandboxes among a home's directories, by their META_FILE. Every sandbox of
 * the home has a directory under sandboxes/, whatever its backend; a listing reads each
 * once (a look-up by name for each read every other's: quadratic in sandboxes).
 */
export class BackendMetas<T extends { id: string; name: string; backend: string }> {
  constructor(
    private readonly home: string,
    private readonly kind: string,
  ) {}

  /** The metadata of `id` when it names one of this backend's sandboxes. */
  async byId(id: string): Promise<T | undefined> {
    if (!isValidSandboxId(id)) return undefined;
    const meta = await new ProcessSandboxDir(this.home, id).readJson<T>(META_FILE);
    return meta?.backend === this.kind ? meta : undefined;
  }

  /** This backend's sandbox named `name` (reads every directory: for one look-up, not one per sandbox). */
  async byName(name: string): Promise<T | undefined> {
    return (await this.all()).find((meta) => meta.name === name);
  }

  /** By id, else by name. */
  async byIdOrName(idOrName: string): Promise<T | undefined> {
    return (await this.byId(idOrName)) ?? (await this.byName(idOrName));
  }

  /** Every one of this backend's sandboxes. */
  async all(): Promise<T[]> {
    const names = await readdir(path.join(this.home, "sandboxes")).catch(() => [] as string[]);
    const out: T[] = [];
    for (const id of names) {
      const meta = await this.byId(id);
      if (meta) out.push(meta);
    }
    return out;
  }
}
