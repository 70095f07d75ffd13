import { type ChildProcess, spawn as nodeSpawn, type StdioOptions } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import type { Readable, Writable } from "node:stream";
import type { SpawnError, SpawnOptions } from "@tether/spawn";
import type { Logger } from "../logger.js";
import type { LaunchSpec } from "./launch.js";

type SpawnAddon = typeof import("@tether/spawn");

type ExitListener = (code: number | null, signal: NodeJS.Signals | null) => void;

/** A started child: its pid and its end, whichever spawner started it. */
export interface StartedProcess {
  readonly pid: number;
  /** Calls back once, when the process exited (code) or was killed (signal). */
  onExit(listener: ExitListener): void;
}

/** A started pipe child: its streams and its end, whichever spawner started it. */
export interface PipeProcess extends StartedProcess {
  /** Null when the child's stdin is /dev/null. */
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
}

/**
 * How pipe children are spawned: our vfork-style addon (@tether/spawn), or Node's
 * child_process where it cannot work (no pidfd_open or clone refused: old kernels,
 * seccomp). libuv forks, and fork copies the page tables of the whole agent, so every
 * exec pays for the agent's size; the addon does not.
 */
let addon: Promise<SpawnAddon | undefined> | undefined;
let addonModule: Promise<SpawnAddon> | undefined;
let log: Logger | undefined;

/** Loads the spawner before the first exec needs it and says (once) when it falls back to Node's. */
export async function preparePipeSpawner(logger: Logger): Promise<"vfork" | "node"> {
  log = logger;
  return (await loadAddon()) ? "vfork" : "node";
}

function loadAddon(): Promise<SpawnAddon | undefined> {
  // TETHER_SPAWNER=node picks Node's spawner on purpose: the benchmark's baseline, and a way out.
  if (!addon && process.env.TETHER_SPAWNER === "node") addon = Promise.resolve(undefined);
  addon ??= importAddon().then(
    (loaded) => {
      const unsupported = loaded.supported();
      if (!unsupported) return loaded;
      fallBack(`pidfd_open: ${unsupported}`);
      return undefined;
    },
    (err: Error) => {
      fallBack(`cannot load @tether/spawn: ${err.message}`);
      return undefined;
    },
  );
  return addon;
}

function importAddon(): Promise<SpawnAddon> {
  addonModule ??= import("@tether/spawn").then((m) => ((m as { default?: SpawnAddon }).default ?? m) as SpawnAddon);
  return addonModule;
}

/**
 * The path of our static tether-exec-as (shipped with @tether/spawn), for children another
 * spawner forks: it sets a user's groups, gid and uid, then execs the command.
 */
export async function execAsHelper(): Promise<string> {
  try {
    return (await importAddon()).execAsPath;
  } catch (err) {
    throw new Error(
      `cannot switch users: @tether/spawn (which ships tether-exec-as) does not load: ${(err as Error).message}`,
    );
  }
}

/** tether-exec-as's arguments before the command: UID GID GROUPS. */
export function execAsArgs(ids: { uid: number; gid: number; groups: number[] }): string[] {
  return [String(ids.uid), String(ids.gid), ids.groups.join(",")];
}

function fallBack(reason: string): void {
  addon = Promise.resolve(undefined);
  log?.warn({ reason }, "vfork spawning is not available here: children are spawned with Node's (fork) instead");
}

/** Spawns a pipe child in a new session; throws Node's spawn errors (code ENOENT...). */
export function spawnPipes(spec: LaunchSpec): Promise<PipeProcess> {
  return spawnEither(
    (spawner) => {
      let stdin: net.Socket | null = null;
      const exit = exitRelay();
      const fds = spawner.spawn(
        spec.file,
        [spec.file, ...spec.args],
        addonOptions(spec, { stdin: spec.stdin }),
        (code, signal) => {
          // As child_process does: stdin goes with the child, whoever else still holds it.
          stdin?.destroy();
          exit.exited(code, signal);
        },
      );
      // The same wrapping child_process gives its stdio: libuv pipe handles on socketpairs.
      if (fds.stdin >= 0) stdin = new net.Socket({ fd: fds.stdin, readable: false, writable: true });
      return {
        pid: fds.pid,
        stdin,
        stdout: new net.Socket({ fd: fds.stdout, readable: true, writable: false }),
        stderr: new net.Socket({ fd: fds.stderr, readable: true, writable: false }),
        onExit: exit.onExit,
      };
    },
    async () => {
      const proc = await nodeChild(spec, [spec.stdin ? "pipe" : "ignore", "pipe", "pipe"]);
      return {
        pid: proc.pid as number,
        stdin: proc.stdin,
        stdout: proc.stdout as Readable,
        stderr: proc.stderr as Readable,
        onExit: nodeExit(proc),
      };
    },
  );
}

/** What `spawnWithOwnOutput` runs: a program, its argv after argv[0], and where and as whom. */
export type OwnOutputSpec = Pick<LaunchSpec, "file" | "args" | "env" | "cwd" | "ids">;

/**
 * Spawns a child in a new session with stdin /dev/null and the agent's own stdout and
 * stderr (a sandbox's command, whose output `docker logs` shows); throws Node's spawn
 * errors (code ENOENT...). Same spawner as pipe children, for the same reason: it starts
 * right after the agent listens, while a host waits for the agent's first answers.
 */
export function spawnWithOwnOutput(spec: OwnOutputSpec): Promise<StartedProcess> {
  return spawnEither(
    (spawner) => {
      const exit = exitRelay();
      const { pid } = spawner.spawn(
        spec.file,
        [spec.file, ...spec.args],
        addonOptions(spec, { stdin: false, inheritOutput: true }),
        exit.exited,
      );
      return { pid, onExit: exit.onExit };
    },
    async () => {
      const proc = await nodeChild(spec, ["ignore", "inherit", "inherit"]);
      return { pid: proc.pid as number, onExit: nodeExit(proc) };
    },
  );
}

/** Our addon where it works, else Node's child_process (falling back for good when the addon says it cannot). */
async function spawnEither<T>(withAddon: (spawner: SpawnAddon) => T, withNode: () => Promise<T>): Promise<T> {
  const spawner = await loadAddon();
  if (spawner) {
    try {
      return withAddon(spawner);
    } catch (err) {
      if (!(err as SpawnError).unsupported) throw err;
      fallBack((err as Error).message);
    }
  }
  return withNode();
}

function addonOptions(spec: OwnOutputSpec, stdio: { stdin: boolean; inheritOutput?: boolean }): SpawnOptions {
  return {
    env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
    cwd: spec.cwd,
    // A new session, hence a process group of its own that signals can target.
    setsid: true,
    uid: spec.ids?.uid,
    gid: spec.ids?.gid,
    groups: spec.ids?.groups,
    ...stdio,
  };
}

/** Starts a child_process child in a new session; throws its spawn error (Node emits it a tick later). */
async function nodeChild(spec: OwnOutputSpec, stdio: StdioOptions): Promise<ChildProcess> {
  let { file, args } = spec;
  let ids: { uid?: number; gid?: number } = { uid: spec.ids?.uid, gid: spec.ids?.gid };
  if (spec.ids?.groups.some((g) => g !== spec.ids?.gid)) {
    // libuv drops every supplementary group: tether-exec-as sets them instead.
    [file, args, ids] = [await execAsHelper(), [...execAsArgs(spec.ids), file, ...args], {}];
  }
  const proc = nodeSpawn(file, args, {
    cwd: spec.cwd,
    env: spec.env,
    // A new session, hence a process group of its own that signals can target.
    detached: true,
    stdio,
    ...ids,
  });
  if (proc.pid === undefined) {
    const [err] = (await once(proc, "error")) as [NodeJS.ErrnoException];
    throw err;
  }
  return proc;
}

/** A child_process child's exit, for a listener that may subscribe after it. */
function nodeExit(proc: ChildProcess): (listener: ExitListener) => void {
  return (listener) => {
    if (proc.exitCode !== null || proc.signalCode !== null) listener(proc.exitCode, proc.signalCode);
    else proc.once("exit", listener);
  };
}

/** Hands an exit to one listener, whether it subscribes before the exit or after. */
function exitRelay(): { exited: ExitListener; onExit: (listener: ExitListener) => void } {
  let exit: [number | null, NodeJS.Signals | null] | undefined;
  let waiting: ExitListener | undefined;
  return {
    exited(code, signal) {
      exit = [code, signal];
      waiting?.(code, signal);
    },
    onExit(listener) {
      if (exit) listener(...exit);
      else waiting = listener;
    },
  };
}
