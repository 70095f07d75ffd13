import { readFile } from "node:fs/promises";
import type Docker from "dockerode";
import { EngineUnavailableError } from "../../errors.js";
import type { NetworkMode } from "../backend.js";

export type EngineKind = "docker" | "podman";

/**
 * Where Docker and Podman differ, and nothing else: the backend asks the strategy
 * instead of testing the engine's kind.
 */
export interface EngineStrategy {
  readonly kind: EngineKind;
  /** The init the engine runs as PID 1 with HostConfig.Init (for messages). */
  readonly initName: string;
  /** HostConfig.NetworkMode for a network choice. */
  networkMode(network: NetworkMode): string;
  /** The container's IP address on its network, when it has one. */
  containerAddress(info: Docker.ContainerInspectInfo): string | undefined;
  /**
   * Who the agent (root in the container) chowns its socket to so the host user can
   * connect. Rootless engines map container root to the host user already.
   */
  socketOwner(hostUser: { uid: number; gid: number }): { uid: number; gid: number };
  /** HostConfig additions the engine needs. */
  hostConfig(): Partial<Docker.HostConfig>;
}

/** A container engine behind the Docker Engine API, as detected. */
export interface Engine {
  kind: EngineKind;
  version: string;
  apiVersion: string;
  /** OCI runtimes it can run containers with, by name (e.g. runc, runsc, crun). */
  runtimes: string[];
  /** Extra arguments the engine passes each runtime (e.g. runsc's --network=none). */
  runtimeArgs: Record<string, string[]>;
  defaultRuntime: string | undefined;
  rootless: boolean;
  /** Where the engine is, for messages: a socket path or host:port. */
  endpoint: string;
  strategy: EngineStrategy;
}

function firstAddress(info: Docker.ContainerInspectInfo): string | undefined {
  const legacy = (info.NetworkSettings as { IPAddress?: string } | undefined)?.IPAddress;
  if (legacy) return legacy;
  for (const net of Object.values(info.NetworkSettings?.Networks ?? {})) {
    if (net.IPAddress) return net.IPAddress;
  }
  return undefined;
}

function dockerStrategy(rootless: boolean): EngineStrategy {
  return {
    kind: "docker",
    initName: "docker-init (tini)",
    networkMode: (network) => network,
    containerAddress: firstAddress,
    socketOwner: (host) => (rootless ? { uid: 0, gid: 0 } : host),
    hostConfig: () => ({}),
  };
}

/**
 * Podman's Docker-compatible API: the same calls, with catatonit as its init. It sets
 * the containers' nofile and nproc limits to its own maximum unless told otherwise,
 * which fails ("error setting rlimit ... operation not permitted") where the host lacks
 * CAP_SYS_RESOURCE; asking for the host's own soft limits (what Docker gives) avoids it.
 */
function podmanStrategy(rootless: boolean, limits: HostLimits): EngineStrategy {
  return {
    kind: "podman",
    initName: "catatonit",
    // Podman's compat layer maps "bridge" to its default network.
    networkMode: (network) => network,
    containerAddress: firstAddress,
    socketOwner: (host) => (rootless ? { uid: 0, gid: 0 } : host),
    hostConfig: () => ({
      Ulimits: [
        { Name: "nofile", Soft: limits.nofile, Hard: limits.nofile },
        { Name: "nproc", Soft: limits.nproc, Hard: limits.nproc },
      ],
    }),
  };
}

interface HostLimits {
  nofile: number;
  nproc: number;
}

/** The soft limits this process runs with (what a process on this host normally gets). */
async function hostLimits(): Promise<HostLimits> {
  const text = await readFile("/proc/self/limits", "utf8").catch(() => "");
  const soft = (label: string, fallback: number) => {
    const line = text.split("\n").find((l) => l.startsWith(label));
    const value = Number(line?.slice(label.length).trim().split(/\s+/)[0]);
    return Number.isFinite(value) && value > 0 ? value : fallback;
  };
  // nproc is capped: a high value is no more useful and Podman's conmon may itself run lower.
  return { nofile: soft("Max open files", 1024), nproc: Math.min(soft("Max processes", 4096), 16384) };
}

/** The engine's address as dockerode uses it, for messages. */
export function engineEndpoint(docker: Docker): string {
  const modem = docker.modem as { socketPath?: unknown; host?: string; port?: number | string };
  if (typeof modem.socketPath === "string") return `unix://${modem.socketPath}`;
  // docker-modem's default is a function choosing between ~/.docker/run/docker.sock and this.
  if (typeof modem.socketPath === "function") return "unix:///var/run/docker.sock";
  return `${modem.host ?? "?"}:${modem.port ?? "?"}`;
}

/** True for errors that mean the engine cannot be reached at all. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return ["ECONNREFUSED", "ENOENT", "EACCES", "ECONNRESET", "EHOSTUNREACH", "ETIMEDOUT", "EPIPE"].includes(code ?? "");
}

/** Asks the engine what it is (`/version`, `/info`); EngineUnavailableError when it does not answer. */
export async function detectEngine(docker: Docker): Promise<Engine> {
  const endpoint = engineEndpoint(docker);
  let version: Docker.DockerVersion;
  let info: Record<string, unknown>;
  try {
    [version, info] = await Promise.all([docker.version(), docker.info() as Promise<Record<string, unknown>>]);
  } catch (err) {
    throw new EngineUnavailableError(endpoint, err);
  }
  const components = (version as { Components?: { Name?: string }[] }).Components ?? [];
  const isPodman = components.some((c) => /podman/i.test(c.Name ?? ""));
  const security = (info.SecurityOptions as string[] | undefined) ?? [];
  const rootless = security.some((o) => o.includes("name=rootless"));
  const runtimeTable = (info.Runtimes as Record<string, { runtimeArgs?: string[] | null }> | undefined) ?? {};
  const runtimes = Object.keys(runtimeTable);
  const runtimeArgs = Object.fromEntries(runtimes.map((name) => [name, runtimeTable[name]?.runtimeArgs ?? []]));
  const kind: EngineKind = isPodman ? "podman" : "docker";
  return {
    kind,
    version: isPodman
      ? ((components.find((c) => /podman/i.test(c.Name ?? "")) as { Version?: string } | undefined)?.Version ??
        version.Version)
      : version.Version,
    apiVersion: version.ApiVersion,
    runtimes,
    runtimeArgs,
    defaultRuntime: (info.DefaultRuntime as string | undefined) || undefined,
    rootless,
    endpoint,
    strategy: isPodman ? podmanStrategy(rootless, await hostLimits()) : dockerStrategy(rootless),
  };
}
