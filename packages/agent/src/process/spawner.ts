import { spawn as nodeSpawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import type { Readable, Writable } from "node:stream";
import type { SpawnError } from "@tether/spawn";
import type { Logger } from "../logger.js";
import type { LaunchSpec } from "./launch.js";

type SpawnAddon = typeof import("@tether/spawn");

/** A started pipe child: its streams and its end, whichever spawner started it. */
export interface PipeProcess {
  readonly pid: number;
  /** Null when the child's stdin is /dev/null. */
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Calls back once, when the process exited (code) or was killed (signal). */
  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
}

/**
 * How pipe children are spawned: our vfork-style addon (@tether/spawn), or Node's
 * child_process where it cannot work (no pidfd_open or clone refused: old kernels,
 * seccomp). libuv forks, and fork copies the page tables of the whole agent, so every
 * exec pays for the agent's size; the addon does not.
 */
let addon: Promise<SpawnAddon | undefined> | undefined;
let log: Logger | undefined;

/** Loads the spawner before the first exec needs it and says (once) when it falls back to Node's. */
export async function preparePipeSpawner(logger: Logger): Promise<"vfork" | "node"> {
  log = logger;
  return (await loadAddon()) ? "vfork" : "node";
}

function loadAddon(): Promise<SpawnAddon | undefined> {
  // TETHER_SPAWNER=node picks Node's spawner on purpose: the benchmark's baseline, and a way out.
  if (!addon && process.env.TETHER_SPAWNER === "node") addon = Promise.resolve(undefined);
  addon ??= import("@tether/spawn").then(
    (m) => {
      const loaded = ((m as { default?: SpawnAddon }).default ?? m) as SpawnAddon;
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

function fallBack(reason: string): void {
  addon = Promise.resolve(undefined);
  log?.warn({ reason }, "vfork spawning is not available here: children are spawned with Node's (fork) instead");
}

/** Spawns a pipe child in a new session; throws Node's spawn errors (code ENOENT...). */
export async function spawnPipes(spec: LaunchSpec): Promise<PipeProcess> {
  const spawner = await loadAddon();
  if (spawner) {
    try {
      return spawnWithAddon(spawner, spec);
    } catch (err) {
      if (!(err as SpawnError).unsupported) throw err;
      fallBack((err as Error).message);
    }
  }
  return spawnWithNode(spec);
}

function spawnWithAddon(spawner: SpawnAddon, spec: LaunchSpec): PipeProcess {
  let exit: [number | null, NodeJS.Signals | null] | undefined;
  let listener: ((code: number | null, signal: NodeJS.Signals | null) => void) | undefined;
  let stdin: net.Socket | null = null;
  const fds = spawner.spawn(
    spec.file,
    [spec.file, ...spec.args],
    {
      env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
      cwd: spec.cwd,
      // A new session, hence a process group of its own that SendSignal can target.
      setsid: true,
      uid: spec.ids?.uid,
      gid: spec.ids?.gid,
      stdin: spec.stdin,
    },
    (code, signal) => {
      // As child_process does: stdin goes with the child, whoever else still holds it.
      stdin?.destroy();
      exit = [code, signal];
      listener?.(code, signal);
    },
  );
  // The same wrapping child_process gives its stdio: libuv pipe handles on socketpairs.
  if (fds.stdin >= 0) stdin = new net.Socket({ fd: fds.stdin, readable: false, writable: true });
  return {
    pid: fds.pid,
    stdin,
    stdout: new net.Socket({ fd: fds.stdout, readable: true, writable: false }),
    stderr: new net.Socket({ fd: fds.stderr, readable: true, writable: false }),
    onExit(cb) {
      if (exit) cb(...exit);
      else listener = cb;
    },
  };
}

async function spawnWithNode(spec: LaunchSpec): Promise<PipeProcess> {
  const proc = nodeSpawn(spec.file, spec.args, {
    cwd: spec.cwd,
    env: spec.env,
    // A new session, hence a process group of its own that SendSignal can target.
    detached: true,
    stdio: [spec.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    uid: spec.ids?.uid,
    gid: spec.ids?.gid,
  });
  if (proc.pid === undefined) {
    // libuv reported the failure; Node emits it on the next tick.
    const [err] = (await once(proc, "error")) as [NodeJS.ErrnoException];
    throw err;
  }
  const pid = proc.pid;
  return {
    pid,
    stdin: proc.stdin,
    stdout: proc.stdout as Readable,
    stderr: proc.stderr as Readable,
    onExit(cb) {
      if (proc.exitCode !== null || proc.signalCode !== null) cb(proc.exitCode, proc.signalCode);
      else proc.once("exit", cb);
    },
  };
}
