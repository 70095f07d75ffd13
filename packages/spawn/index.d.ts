/** vfork-style spawning; the child's pipes come back as fds for JavaScript to wrap. */

export interface SpawnOptions {
  /** The child's environment, as "NAME=value" strings; its PATH is the one searched. */
  env: string[];
  cwd: string;
  /** Start a new session (hence a process group of its own). */
  setsid?: boolean;
  /** Switch to these ids (both or neither). */
  uid?: number;
  gid?: number;
  /** With uid and gid: the supplementary groups to set (else all are dropped). */
  groups?: number[];
  /** True: stdin is a pipe; false: /dev/null. */
  stdin: boolean;
  /** True: stdout and stderr are ours (the child writes where we do) instead of pipes. */
  inheritOutput?: boolean;
}

export interface Spawned {
  pid: number;
  /** Our ends of the child's stdio (socketpairs, as libuv makes them); -1 for /dev/null or inherited output. */
  stdin: number;
  stdout: number;
  stderr: number;
}

/** An Error shaped like Node's spawn errors; `unsupported` when no process can be spawned this way here. */
export interface SpawnError extends NodeJS.ErrnoException {
  unsupported: boolean;
}

/** Why this spawner cannot work here (no pidfd_open: Linux < 5.3, seccomp), or null. */
export declare function supported(): string | null;

/**
 * Spawns `file` (searched in options.env's PATH when it has no slash) with argv `args`
 * (args[0] included). onExit is called once: (code, null) or (null, "SIGKILL").
 * Throws a SpawnError (code ENOENT, EACCES...) when the child could not be started.
 */
export declare function spawn(
  file: string,
  args: string[],
  options: SpawnOptions,
  onExit: (code: number | null, signal: NodeJS.Signals | null) => void,
): Spawned;

/** The ids a file operation acts with. */
export interface FsIds {
  uid: number;
  gid: number;
  /** Supplementary groups. */
  groups: number[];
}

/**
 * Calls `fn` with the calling thread's fsuid, fsgid and supplementary groups set to `ids`
 * (raw per-thread system calls; needs root), and restores them afterwards, also when it
 * throws. `fn` must be synchronous and use Node's synchronous fs calls: those run on this
 * thread, the async ones on libuv's pool, which keeps the agent's own rights.
 */
export declare function withFsIds<T>(ids: FsIds, fn: () => T): T;

/**
 * Path of `tether-exec-as UID GID GROUPS PROGRAM [ARG...]`, a static program that sets the
 * groups (comma-separated), gid and uid, then execs PROGRAM searched in PATH.
 */
export declare const execAsPath: string;
