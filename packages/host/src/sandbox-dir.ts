import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";

/** Where the per-sandbox `run/` directory appears inside the sandbox. */
export const SANDBOX_RUN_DIR = "/run/tether";
/**
 * Where the per-sandbox `share/` directory appears inside the sandbox, read-only: files
 * `tether cp` copies in are staged (hard-linked where possible) there, out of the
 * sandbox's reach to change.
 */
export const SANDBOX_SHARE_DIR = "/run/tether-share";
/** The agent's unix socket, inside `run/`. */
export const AGENT_SOCKET_NAME = "agent.sock";
/** The one-shot token hand-over file, inside `run/`; the agent deletes it once read. */
export const TOKEN_HANDOVER_NAME = "token";

/** Sandbox ids we generate: 12 hex digits. Ids given by callers follow the same shape rules. */
const ID_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** A fresh sandbox id: 12 random hex digits. */
export function newSandboxId(): string {
  return randomBytes(6).toString("hex");
}

/** True for a string usable as a sandbox id (and so as a directory name). */
export function isValidSandboxId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/**
 * A sandbox's directory on the host, `$TETHER_HOME/sandboxes/<id>/` (mode 0700):
 * `token` (0600) is the host's copy of the access token and never enters the sandbox;
 * `run/` is mounted at /run/tether and holds the agent's socket and, until the agent has
 * read it, the token hand-over file; `share/` is mounted read-only at /run/tether-share.
 */
export class SandboxDir {
  readonly path: string;

  constructor(
    readonly home: string,
    readonly id: string,
  ) {
    if (!isValidSandboxId(id)) throw new TypeError(`invalid sandbox id ${JSON.stringify(id)}`);
    this.path = path.join(home, "sandboxes", id);
  }

  get runDir(): string {
    return path.join(this.path, "run");
  }

  /** Mounted read-only at /run/tether-share: files on their way in. */
  get shareDir(): string {
    return path.join(this.path, "share");
  }

  /** The agent's socket as seen from the host. */
  get socketPath(): string {
    return path.join(this.runDir, AGENT_SOCKET_NAME);
  }

  private get tokenPath(): string {
    return path.join(this.path, "token");
  }

  /**
   * Creates the directory with a fresh token; fails if it already exists, and leaves
   * nothing behind when a later step fails. Each step is a thread-pool round trip, and a
   * create waits for this one: the steps that do not depend on each other run side by side.
   */
  async create(): Promise<string> {
    await mkdir(path.dirname(this.path), { recursive: true, mode: 0o700 });
    await mkdir(this.path, { mode: 0o700 });
    const token = randomBytes(32).toString("base64url");
    // mkdir's mode is cut by the umask, so each directory is set to exactly 0700 after.
    const privateDir = (dir: string) => mkdir(dir, { mode: 0o700 }).then(() => chmod(dir, 0o700));
    try {
      await Promise.all([
        chmod(this.path, 0o700),
        writeFile(this.tokenPath, `${token}\n`, { mode: 0o600, flag: "wx" }),
        privateDir(this.runDir).then(() => this.writeHandover(token)),
        privateDir(this.shareDir),
      ]);
    } catch (err) {
      await this.remove();
      throw err;
    }
    return token;
  }

  /**
   * Readies run/ for the agent's next start: the token hand-over file again (the agent
   * deleted it), and no stale socket (inside gVisor the agent cannot even lstat it).
   */
  async prepareRestart(): Promise<void> {
    await rm(this.socketPath, { force: true });
    await this.handOverToken();
  }

  /** (Re)writes run/token for the agent to take at its next start. */
  async handOverToken(): Promise<void> {
    const token = await this.readToken();
    if (!token) throw new Error(`${this.tokenPath} is missing`);
    await rm(path.join(this.runDir, TOKEN_HANDOVER_NAME), { force: true });
    await this.writeHandover(token);
  }

  private async writeHandover(token: string): Promise<void> {
    await writeFile(path.join(this.runDir, TOKEN_HANDOVER_NAME), `${token}\n`, { mode: 0o600, flag: "wx" });
  }

  /** The access token, or undefined when the directory (or its token) is gone. */
  async readToken(): Promise<string | undefined> {
    try {
      return (await readFile(this.tokenPath, "utf8")).trim() || undefined;
    } catch {
      return undefined;
    }
  }

  async exists(): Promise<boolean> {
    return (await stat(this.path).catch(() => undefined))?.isDirectory() ?? false;
  }

  /** Removes the directory and everything in it; fine if it is already gone. */
  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}
