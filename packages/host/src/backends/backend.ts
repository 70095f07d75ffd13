import type { PruneBundlesReport } from "@tether/bundle";
/**
 * What every sandbox backend offers. `docker` implements it through a container engine;
 * `local` and `bwrap` with the agent under a detached supervisor process. Backends
 * are stateless over the engine: the truth is the engine's (and the sandbox directory's),
 * so a registry built on top can reconcile against `list()`.
 */
export interface SandboxBackend {
  /** "docker", "bwrap" or "local". */
  readonly kind: string;
  /** Creates and starts a sandbox; resolves once its agent answers health. Leaves nothing behind on failure. */
  create(spec: SandboxSpec): Promise<SandboxInfo>;
  /**
   * A create of this (valid) spec follows: start the look-ups it will wait for, so they go on
   * while the caller does its own work first. Changes nothing; absent where there is nothing to ask.
   */
  prefetch?(spec: SandboxSpec): void;
  /** Starts a stopped sandbox; resolves once its agent answers health. */
  start(id: string): Promise<SandboxInfo>;
  /** SIGTERM to the sandbox (its agent passes it on), SIGKILL after the timeout. */
  stop(id: string, options?: StopOptions): Promise<void>;
  /** Freezes every process of the sandbox. */
  pause(id: string): Promise<void>;
  unpause(id: string): Promise<void>;
  /** Removes the sandbox and its host directory, whatever its state; a sandbox already gone is fine. */
  remove(id: string): Promise<void>;
  /** The sandbox's output (the agent's log and the supervised command's output), stdout and stderr apart. */
  logs(id: string, options?: LogOptions): AsyncIterable<LogChunk>;
  /** The sandbox as it is now; SandboxNotFoundError when it is gone. */
  inspect(id: string): Promise<SandboxInfo>;
  /** Every sandbox this backend manages (under this TETHER_HOME), optionally filtered by labels. */
  list(filter?: ListFilter): Promise<SandboxInfo[]>;
  /** Resource use of a running sandbox now, from the engine's cgroup stats; absent where a backend has none. */
  stats?(id: string): Promise<SandboxStats>;
  /**
   * Keeps the sandbox as `tag`, which `create` then takes as its image. docker commits the
   * filesystem as an image, with the image's own command, user and workdir (a sandbox made
   * from it starts as one from the image would; memory is not kept); vm writes a memory
   * snapshot (a sandbox made from it is a fork: its processes go on where they were).
   * Absent where a backend has no images.
   */
  snapshot?(id: string, tag: string): Promise<void>;
  /** Removes what `snapshot` made; false while sandboxes still use it. */
  removeSnapshot?(tag: string): Promise<boolean>;
  /** Removes agent bundles its sandboxes no longer use; absent where a backend runs the host's own agent. */
  pruneBundles?(olderThanMs: number): Promise<PruneBundlesReport>;
}

/** A running sandbox's resource use at one moment. */
export interface SandboxStats {
  at: Date;
  /** CPUs the sandbox may use (its limit, else the host's). */
  cpuCount: number;
  /** Percent of those CPUs used since the engine's previous sample. */
  cpuUsedPct: number;
  /** Bytes of memory in use, page cache left out. */
  memUsed: number;
  /** The memory limit in bytes (the host's memory when unlimited). */
  memTotal: number;
  memCache: number;
  /** Bytes the sandbox has written to its filesystem (its writable layer). */
  diskUsed: number;
}

/** The states a sandbox has while its backend has it: what backends report, and `list`'s default. */
export const LIFETIME_STATES = ["creating", "running", "paused", "stopped", "error"] as const;

/**
 * What a sandbox is doing: the lifetime states, and `archived`, the registry's (removed by
 * gc, its work directory kept under TETHER_HOME/archive).
 */
export const SANDBOX_STATES = [...LIFETIME_STATES, "archived"] as const;
export type SandboxState = (typeof SANDBOX_STATES)[number];

export type NetworkMode = "none" | "bridge";

/** A host path made visible in the sandbox. */
export interface BindMount {
  /** Absolute host path. */
  source: string;
  /** Absolute path inside the sandbox. */
  target: string;
  readOnly?: boolean;
}

/** How to create a sandbox. Backends reject what they cannot honour with InvalidSandboxSpecError. */
export interface SandboxSpec {
  /** The image (docker), ignored by backends without images. */
  image: string;
  /** Our id for the sandbox; generated (12 hex digits) when absent. A registry may reserve one first. */
  id?: string;
  /** The container's name; default `tether-<id>`. */
  name?: string;
  /** User labels; names starting with `tether.` are reserved. */
  labels?: Record<string, string>;
  /** Env vars for the sandbox's processes, over the image's. */
  env?: Record<string, string>;
  /** Default working directory (the image's when absent). */
  workdir?: string;
  /** Default user for commands and the image's command (the image's when absent). The agent itself runs as root. */
  user?: string;
  /** CPU limit in CPUs, e.g. 0.5. */
  cpus?: number;
  /** Memory limit: bytes, or a string like "512m", "2g". */
  memory?: number | string;
  /** Maximum number of processes. */
  pidsLimit?: number;
  /** "none" (default): loopback only, the agent reached over its unix socket; "bridge": also TCP. */
  network?: NetworkMode;
  /** OCI runtime: "runc" (default) or "runsc" (gVisor). */
  runtime?: string;
  /** Mount the image's root filesystem read-only. */
  readOnlyRootfs?: boolean;
  mounts?: BindMount[];
  /** Overrides the image's entrypoint + cmd as the supervised command. */
  command?: string[];
  /** Run the image's command (or `command`) as a supervised child; default true. */
  runCommand?: boolean;
  /** How long to wait for the agent's health; default 60 s. */
  readyTimeoutMs?: number;
}

/** How the host reaches a sandbox's agent. */
export interface AgentEndpoint {
  /** The agent's unix socket on the host. */
  socket: string;
  /** http://IP:PORT when the sandbox has a network the host can route to. */
  url?: string;
  accessToken: string;
  /**
   * A host directory the sandbox's agent also sees (its `--transfer-dir`), through which
   * files are copied without streaming; absent where the sandbox may not see the host's
   * writes as they are (a remote engine, gVisor with exclusive mounts) or there is none.
   */
  transferDir?: string;
  /**
   * A host directory the agent sees read-only (its `--import-dir`): files copied in are
   * staged there, hard-linked when they can be, since the sandbox cannot change them.
   */
  importDir?: string;
}

export interface SandboxInfo {
  id: string;
  name: string;
  backend: string;
  image: string;
  state: SandboxState;
  /** User labels (the reserved `tether.*` ones left out). */
  labels: Record<string, string>;
  createdAt: Date;
  /** Absent when the sandbox's host directory is gone (then the agent cannot be reached). */
  endpoint?: AgentEndpoint;
  /** The engine's id for the sandbox (container id). */
  backendId: string;
  /**
   * A vm sandbox's network bridge: "tap" (Tether's bridge; the guest reaches neither this
   * machine nor other VMs) or "user" (QEMU's user-mode NAT, which reaches this machine's loopback).
   */
  vmNetwork?: "tap" | "user";
  /** The exit code of a stopped sandbox's agent. */
  exitCode?: number;
  /** How isolated it is: "container", "namespaces (bubblewrap)" or "none" (set by Sandboxes). */
  isolation?: string;
  /** The last host-side use (set by Sandboxes from its registry, as are the fields below). */
  lastUsedAt?: Date;
  /** Absolute lifetime from each start, ms. */
  timeoutMs?: number;
  /** When the absolute timeout passes. */
  expiresAt?: Date;
  /** How long it may go idle, ms. */
  idleTimeoutMs?: number;
  /** What expiry does to it. */
  onExpiry?: "stop" | "remove";
  /** Why it is in state error. */
  error?: string;
  metadata?: Record<string, unknown>;
  /** Where gc archived it. */
  archivePath?: string;
}

export interface StopOptions {
  /** Seconds between SIGTERM and SIGKILL; default 10. */
  timeoutSeconds?: number;
}

export interface LogOptions {
  /** Keep streaming new output until the sandbox stops or `signal` aborts. */
  follow?: boolean;
  /** Only the last N lines. */
  tail?: number;
  /**
   * Each chunk's `at`: docker's engine stamps every line (chunks are then lines, or pieces
   * of a long one), a `local` or `bwrap` sandbox's supervisor every piece of output it reads.
   */
  timestamps?: boolean;
  /** Only output recorded at or after this time; to the second on docker (a finer cut is the caller's). */
  since?: Date;
  signal?: AbortSignal;
}

export interface LogChunk {
  stream: "stdout" | "stderr";
  data: Buffer;
  /**
   * When it was recorded, with `timestamps`. Absent for output a supervisor from before
   * timestamps wrote (a sandbox started by an older tether).
   */
  at?: Date;
}

export interface ListFilter {
  labels?: Record<string, string>;
}

/** Label names every backend's sandboxes carry. */
export const LABEL_SANDBOX = "tether.sandbox";
export const LABEL_MANAGED_BY = "tether.managed-by";
export const MANAGED_BY = "tether";
/** Which TETHER_HOME a sandbox belongs to (a hash of its path), so homes sharing an engine stay apart. */
export const LABEL_HOME = "tether.home";
/** Label names starting with this are ours. */
export const RESERVED_LABEL_PREFIX = "tether.";
