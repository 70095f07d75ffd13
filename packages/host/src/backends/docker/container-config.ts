import { AGENT_CONTAINER_PORT, agentCommand, DEFAULT_MOUNT_POINT } from "@tether/bundle";
import type Docker from "dockerode";
import { AGENT_SOCKET_NAME, SANDBOX_RUN_DIR, SANDBOX_SHARE_DIR, TOKEN_HANDOVER_NAME } from "../../sandbox-dir.js";
import { LABEL_HOME, LABEL_MANAGED_BY, LABEL_SANDBOX, MANAGED_BY } from "../backend.js";
import type { ValidSpec } from "../spec.js";
import type { EngineStrategy } from "./engine.js";

/** The label that records the image the user asked for (the container may run a derived one). */
export const LABEL_IMAGE = "tether.image";

/** Prefix under which the agent hands env vars to its children only (see the agent's inheritedEnv). */
const CHILD_ENV_PREFIX = "TETHER_ENV_";

/** Env names that would configure the agent's own runtime if left in the container's environment. */
function belongsToAgent(name: string): boolean {
  return name === "NODE_OPTIONS" || name.startsWith("LD_") || name.startsWith("TETHER_");
}

/**
 * Processes and threads the sandbox's own machinery takes from its pids limit: the engine's
 * init and the agent's node (main thread, libuv's pool of 4, V8's workers, up to 11 here),
 * with room for a node on a host with more cores. `pidsLimit` is what the sandbox's
 * commands get; this is added to it, or a small limit would let the agent start and then
 * die (or fail to spawn) while create reported success.
 */
export const AGENT_PIDS_SHARE = 24;

/** The sandbox's processes when the spec names no limit (a fork bomb stops there). */
export const DEFAULT_PIDS_LIMIT = 1024;

/** The container's memory (the agent's, about 60 MiB, included) when the spec names none. */
export const DEFAULT_MEMORY_BYTES = 2 * 1024 ** 3;

/**
 * Capabilities of Docker's default set the agent and the commands it runs as other users
 * do not need: raw sockets (packet spoofing on a bridge network), device nodes, file
 * capabilities, changing the bounding set, chroot, audit records. Kept: CHOWN,
 * DAC_OVERRIDE, FOWNER, FSETID and KILL (root's file access and signals across users),
 * SETUID and SETGID (the agent switches to the request's user), NET_BIND_SERVICE.
 */
export const DROPPED_CAPABILITIES = ["NET_RAW", "MKNOD", "SETFCAP", "SETPCAP", "SYS_CHROOT", "AUDIT_WRITE"];

/** Everything a container for a sandbox is made from. */
export interface ContainerPlan {
  id: string;
  name: string;
  spec: ValidSpec;
  /** The image to run (the user's, or a derived one with the bundle inside). */
  runImage: string;
  image: Docker.ImageInspectInfo;
  /** Host directory of the bundle to mount at /.tether; absent when the image has it built in. */
  bundleDir?: string;
  /** Host directory mounted at /run/tether. */
  runDir: string;
  /** Host directory mounted read-only at /run/tether-share. */
  shareDir: string;
  homeLabel: string;
  hostUser: { uid: number; gid: number };
  strategy: EngineStrategy;
}

/**
 * The container's environment beyond the image's. The engine merges it over the image's
 * Env, so an image's NODE_OPTIONS or LD_PRELOAD (or TETHER_*) would reach the agent's
 * node: each is blanked here and handed on as TETHER_ENV_<NAME>, which the agent
 * (started with --inherit-env) gives back to its children.
 */
export function containerEnv(imageEnv: readonly string[], userEnv: Record<string, string>): string[] {
  const merged = new Map<string, string>();
  for (const entry of imageEnv) {
    const eq = entry.indexOf("=");
    if (eq > 0) merged.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  const out: string[] = [];
  for (const [name, value] of Object.entries(userEnv)) {
    merged.set(name, value);
    if (!belongsToAgent(name)) out.push(`${name}=${value}`);
  }
  for (const [name, value] of merged) {
    if (!belongsToAgent(name)) continue;
    out.push(`${name}=`, `${CHILD_ENV_PREFIX}${name}=${value}`);
  }
  return out;
}

/** The image's own command: its entrypoint followed by its cmd. */
export function imageCommand(image: Docker.ImageInspectInfo): string[] {
  const config = image.Config as { Entrypoint?: string[] | string | null; Cmd?: string[] | string | null };
  const asArray = (v: string[] | string | null | undefined) => (Array.isArray(v) ? v : v ? [v] : []);
  return [...asArray(config.Entrypoint), ...asArray(config.Cmd)];
}

/** The agent's default user: the spec's, else the image's USER (its user part). */
function defaultUser(plan: ContainerPlan): string | undefined {
  const user = plan.spec.user ?? plan.image.Config.User?.split(":")[0];
  return user || undefined;
}

/** tetherd's flags for this sandbox. The token never appears here: only the path of its hand-over file. */
export function agentFlags(plan: ContainerPlan): string[] {
  const owner = plan.strategy.socketOwner(plan.hostUser);
  const flags = [
    "--socket",
    `${SANDBOX_RUN_DIR}/${AGENT_SOCKET_NAME}`,
    "--socket-owner",
    `${owner.uid}:${owner.gid}`,
    "--access-token-file",
    `${SANDBOX_RUN_DIR}/${TOKEN_HANDOVER_NAME}`,
    // run/ is the host's too: `tether cp` stages files there (see the agent's files/transfer).
    "--transfer-dir",
    SANDBOX_RUN_DIR,
    "--import-dir",
    SANDBOX_SHARE_DIR,
    "--inherit-env",
  ];
  if (plan.spec.network === "none") flags.push("--no-tcp");
  // With a network, services listening on the sandbox's loopback only are re-exposed on
  // its address, so the host reaches them by the container's IP (tetherd's default is off).
  else flags.push("--host", "0.0.0.0", "--port", String(AGENT_CONTAINER_PORT), "--expose-loopback");
  const user = defaultUser(plan);
  if (user) flags.push("--user", user);
  const workdir = plan.spec.workdir ?? plan.image.Config.WorkingDir;
  if (workdir) flags.push("--workdir", workdir);
  const command = plan.spec.command ?? imageCommand(plan.image);
  if (plan.spec.runCommand && command.length > 0) flags.push("--", ...command);
  return flags;
}

/** The Engine API's create body for a sandbox's container. */
export function containerConfig(plan: ContainerPlan): Docker.ContainerCreateOptions {
  const { spec } = plan;
  const [entrypoint, ...cmd] = agentCommand(DEFAULT_MOUNT_POINT, agentFlags(plan));
  const binds = [
    ...(plan.bundleDir ? [`${plan.bundleDir}:${DEFAULT_MOUNT_POINT}:ro`] : []),
    `${plan.runDir}:${SANDBOX_RUN_DIR}`,
    `${plan.shareDir}:${SANDBOX_SHARE_DIR}:ro`,
    ...spec.mounts.map((m) => `${m.source}:${m.target}${m.readOnly ? ":ro" : ""}`),
  ];
  const hostConfig: Docker.HostConfig = {
    // The engine's init (docker-init, i.e. tini; catatonit under Podman) is PID 1: it
    // reaps orphaned zombies and forwards SIGTERM to the agent. Node cannot be a correct
    // PID 1 itself: reaping arbitrary children (waitpid(-1)) would steal the exit status
    // of libuv's own children.
    Init: true,
    Binds: binds,
    NetworkMode: plan.strategy.networkMode(spec.network),
    ReadonlyRootfs: spec.readOnlyRootfs ?? false,
    CapDrop: DROPPED_CAPABILITIES,
    // No setuid binary or file capability raises a process's privileges. The agent, root,
    // still switches to the request's user: dropping privileges needs no new ones.
    SecurityOpt: ["no-new-privileges"],
    Memory: spec.memory ?? DEFAULT_MEMORY_BYTES,
    PidsLimit: (spec.pidsLimit ?? DEFAULT_PIDS_LIMIT) + AGENT_PIDS_SHARE,
    ...plan.strategy.hostConfig(),
  };
  if (spec.cpus !== undefined) hostConfig.NanoCpus = Math.round(spec.cpus * 1e9);
  if (spec.runtime !== undefined) hostConfig.Runtime = spec.runtime;
  return {
    name: plan.name,
    Image: plan.runImage,
    Entrypoint: [entrypoint],
    Cmd: cmd,
    // The agent runs as root so it can switch users; `user` is its default user instead.
    User: "0:0",
    WorkingDir: spec.workdir,
    Env: containerEnv(plan.image.Config.Env ?? [], spec.env),
    // The agent passes SIGTERM on to the image's command, whatever the image's own STOPSIGNAL.
    StopSignal: "SIGTERM",
    Labels: {
      ...spec.labels,
      [LABEL_SANDBOX]: plan.id,
      [LABEL_MANAGED_BY]: MANAGED_BY,
      [LABEL_HOME]: plan.homeLabel,
      [LABEL_IMAGE]: spec.image,
    },
    ...(spec.network === "bridge" ? { ExposedPorts: { [`${AGENT_CONTAINER_PORT}/tcp`]: {} } } : {}),
    HostConfig: hostConfig,
  };
}
