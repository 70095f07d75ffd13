import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, link, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { TetherHostError } from "./errors.js";

const run = promisify(execFile);

/** Where the per-sandbox `run/` directory appears inside the sandbox. */
export const SANDBOX_RUN_DIR = "/run/tether";
/**
 * Where the per-sandbox `share/` directory appears inside the sandbox, read-only: files
 * `tether cp` copies in are staged (copied, never hard-linked) there, out of the
 * sandbox's reach to change.
 */
export const SANDBOX_SHARE_DIR = "/run/tether-share";
/** The agent's unix socket, inside the sandbox's `run/`; the host's own link to it has the same name. */
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

/** What `create` may be asked for. */
export interface SandboxDirOptions {
  /**
   * Bound what the sandbox can write into the host's run/ to this many bytes: a tmpfs of
   * that size is mounted there (its pages are charged to the memory cgroup of whoever
   * writes them, so to the sandbox's container). Only when this process may mount;
   * otherwise run/ stays a plain directory.
   */
  boundRunBytes?: number;
}

/**
 * A sandbox's directory on the host, `$TETHER_HOME/sandboxes/<id>/` (mode 0700):
 * `token` (0600) is the host's copy of the access token and never enters the sandbox;
 * `run/` (a size-limited tmpfs where asked and allowed) holds `run/sandbox/`, mounted at
 * /run/tether, with the agent's socket and, until the agent has read it, the token
 * hand-over file, and `run/agent.sock`, the host's own hard link to that socket, made
 * when the agent starts: the sandbox can replace what is in its directory, never that
 * link, so the host always reaches the agent it started. `share/` is mounted read-only
 * at /run/tether-share.
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

  /** run/: the sandbox's directory and the host's link to the agent's socket, on one filesystem (for the link). */
  private get runVolume(): string {
    return path.join(this.path, "run");
  }

  /** Mounted read-write at /run/tether: the agent's socket, the token hand-over, staged files. */
  get runDir(): string {
    return path.join(this.runVolume, "sandbox");
  }

  /** Mounted read-only at /run/tether-share: files on their way in. */
  get shareDir(): string {
    return path.join(this.path, "share");
  }

  /** Where the agent binds its socket, as seen from the host: the sandbox can replace what is there. */
  get agentSocketPath(): string {
    return path.join(this.runDir, AGENT_SOCKET_NAME);
  }

  /** The host's link to the agent's socket (see `adoptSocket`): what the host connects to. */
  get socketPath(): string {
    return path.join(this.runVolume, AGENT_SOCKET_NAME);
  }

  /** True once `adoptSocket` has linked the agent's socket (and the link is still a socket). */
  async hasAdoptedSocket(): Promise<boolean> {
    return (await lstat(this.socketPath).catch(() => undefined))?.isSocket() ?? false;
  }

  private get tokenPath(): string {
    return path.join(this.path, "token");
  }

  /**
   * Hard-links the socket the agent has just bound (a unix socket is reached by its
   * inode, whichever name leads there) as `socketPath`, outside the sandbox's reach.
   * Called as soon as the agent answers health after each start; from then on a socket
   * the sandbox renames over its own agent.sock is never the one the host talks to, and
   * the host's token never goes to it. Before that, the image's command (started as the
   * agent listens) could swap the socket only if it may write run/sandbox: as root, who
   * can read the agent's memory anyway, or as a user with the host's uid.
   */
  async adoptSocket(): Promise<void> {
    const temp = path.join(this.runVolume, `.${AGENT_SOCKET_NAME}.${randomBytes(6).toString("hex")}`);
    await link(this.agentSocketPath, temp);
    try {
      if (!(await lstat(temp)).isSocket()) throw new TetherHostError(`${this.agentSocketPath} is not a socket`);
      await rename(temp, this.socketPath);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  /**
   * Creates the directory with a fresh token; fails if it already exists, and leaves
   * nothing behind when a later step fails. Each step is a thread-pool round trip, and a
   * create waits for this one: the steps that do not depend on each other run side by side.
   */
  async create(options: SandboxDirOptions = {}): Promise<string> {
    await mkdir(path.dirname(this.path), { recursive: true, mode: 0o700 });
    await mkdir(this.path, { mode: 0o700 });
    const token = randomBytes(32).toString("base64url");
    // mkdir's mode is cut by the umask, so each directory is set to exactly 0700 after.
    const privateDir = (dir: string) => mkdir(dir, { mode: 0o700 }).then(() => chmod(dir, 0o700));
    const runVolume = async () => {
      await privateDir(this.runVolume);
      if (options.boundRunBytes !== undefined) await this.mountRun(options.boundRunBytes);
      await privateDir(this.runDir);
    };
    try {
      await Promise.all([
        chmod(this.path, 0o700),
        writeFile(this.tokenPath, `${token}\n`, { mode: 0o600, flag: "wx" }),
        runVolume().then(() => this.writeHandover(token)),
        privateDir(this.shareDir),
      ]);
    } catch (err) {
      await this.remove();
      throw err;
    }
    return token;
  }

  /** Mounts a tmpfs of `bytes` on run/ when this process may (root); otherwise leaves the plain directory. */
  private async mountRun(bytes: number): Promise<void> {
    if (process.geteuid?.() !== 0) return;
    const options = `size=${bytes},mode=0700,nosuid,nodev,noexec`;
    await run("mount", ["-t", "tmpfs", "-o", options, "tether-run", this.runVolume]).catch((err: unknown) => {
      throw new TetherHostError(`cannot mount a ${bytes}-byte tmpfs on ${this.runVolume}: ${(err as Error).message}`, {
        cause: err,
      });
    });
  }

  /** True when run/ is a filesystem of its own (the tmpfs `create` mounts). */
  private async runMounted(): Promise<boolean> {
    const [volume, parent] = await Promise.all([
      lstat(this.runVolume).catch(() => undefined),
      lstat(this.path).catch(() => undefined),
    ]);
    return volume !== undefined && parent !== undefined && volume.dev !== parent.dev;
  }

  /**
   * Readies run/ for the agent's next start: the tmpfs and run/sandbox/ again if they went
   * with a reboot, the token hand-over file again (the agent deleted it), and no stale
   * socket (inside gVisor the agent cannot even lstat it).
   */
  async prepareRestart(options: SandboxDirOptions = {}): Promise<void> {
    // After a reboot the tmpfs is gone: mount it again, and make run/sandbox/ for the bind.
    if (options.boundRunBytes !== undefined && !(await this.runMounted())) await this.mountRun(options.boundRunBytes);
    await mkdir(this.runDir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
    await chmod(this.runDir, 0o700);
    await Promise.all([rm(this.agentSocketPath, { force: true }), rm(this.socketPath, { force: true })]);
    await this.handOverToken();
  }

  /** (Re)writes run/token for the agent to take at its next start. */
  async handOverToken(): Promise<void> {
    const token = await this.readToken();
    if (!token) throw new TetherHostError(`${this.tokenPath} is missing`);
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

  /** Removes the directory and everything in it (unmounting run/ first); fine if it is already gone. */
  async remove(): Promise<void> {
    // A lazy unmount: the container's own mount of it (another namespace) does not keep it busy, an open file might.
    if (await this.runMounted()) await run("umount", ["-l", this.runVolume]);
    await rm(this.path, { recursive: true, force: true });
  }
}

/** Removes a whole Tether home, each sandbox directory first (so a run/ tmpfs is unmounted, not left busy). */
export async function removeHome(home: string): Promise<void> {
  const ids = await readdir(path.join(home, "sandboxes")).catch(() => [] as string[]);
  await Promise.all(ids.filter(isValidSandboxId).map((id) => new SandboxDir(home, id).remove()));
  await rm(home, { recursive: true, force: true });
}
