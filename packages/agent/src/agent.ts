import type net from "node:net";
import { AGENT_DEFAULT_PORT } from "@tether/protocol/constants";
import { isAuthorized } from "./auth/access.js";
import { UserDirectory } from "./auth/users.js";
import type { CocoonListeners, CocoonOptions } from "./cocoon/listener.js";
import type { AgentContext } from "./context.js";
import { uploadJournal } from "./files/upload-journal.js";
import { type AgentLimits, DEFAULT_LIMITS } from "./limits.js";
import { AgentLogger, createLogger, type Logger } from "./logger.js";
import { LoopbackExposer } from "./ports/loopback-exposer.js";
import { PortWatcher } from "./ports/port-watcher.js";
import { createExecService } from "./process/exec-service.js";
import { inheritedEnv } from "./process/inherited-env.js";
import { createProcessService } from "./process/service.js";
import { preparePipeSpawner } from "./process/spawner.js";
import { ProcessTable } from "./process/table.js";
import { createRequestHandler } from "./server/handler.js";
import { LazyService } from "./server/lazy-service.js";
import { createDualServer, listenTcp, listenUnix } from "./server/listen.js";
import { AgentState } from "./state.js";
import { planSupervisedCommand } from "./supervisor/plan.js";
import { SupervisedCommand } from "./supervisor/supervised-command.js";
import type { CloneRetry } from "./workspace/git.js";
import type { WorkspaceInit } from "./workspace/init.js";

/**
 * How long the agent must have had no request, after it starts listening, before it loads
 * its logger (see AgentLogger): the host's first calls come right after the agent answers.
 * It loads at the latest a second after the start.
 */
const LOGGER_IDLE_MS = 20;
const LOGGER_LATEST_MS = 1000;

/** How long the supervised command gets between SIGTERM and SIGKILL when the agent stops. */
export const DEFAULT_SUPERVISE_STOP_TIMEOUT_MS = 5000;

export interface AgentOptions {
  /** TCP host; default 127.0.0.1. Nothing listens beyond loopback unless asked. */
  host?: string;
  /** TCP port; default 49983, 0 picks a free one. `false` disables TCP. */
  port?: number | false;
  /** Unix socket path (mode 0600); may be given alongside TCP. */
  socket?: string;
  /** chown the unix socket to this uid:gid, so a host user other than the agent's can connect. */
  socketOwner?: { uid: number; gid: number };
  /** Seed the default env vars from the agent's own environment (see `inheritedEnv`). */
  inheritEnv?: boolean;
  /** Run this argv (an image's entrypoint + cmd) as the sandbox's supervised command. */
  supervise?: readonly string[];
  /** SIGTERM-to-SIGKILL time for the supervised command on close; default 5 s. */
  superviseStopTimeoutMs?: number;
  accessToken?: string;
  defaultUser?: string;
  defaultWorkdir?: string;
  logger?: Logger;
  logLevel?: string;
  /**
   * Re-expose services listening on loopback only on the sandbox's other addresses
   * (see LoopbackExposer). Off unless asked: an agent running on a host, not in a
   * sandbox, must not publish the host's loopback services.
   */
  exposeLoopback?: boolean;
  /** How often listening ports are polled while watched; default 250 ms. */
  portScanIntervalMs?: number;
  /** Base URL yolo's Agent.Init clones OWNER/NAME.git from; default https://github.com. */
  gitBaseUrl?: string;
  /** Clone attempts and first backoff of workspace init; default 4 attempts from 1 s. */
  cloneRetry?: CloneRetry;
  /** cocoon-style line-JSON exec listeners (vsock, unix socket, TCP). */
  cocoon?: CocoonOptions;
  /**
   * A directory the host shares with the sandbox, for copies without streaming (see
   * files/transfer.ts); files staged there for the host are chowned to `socketOwner`.
   */
  transferDir?: string;
  /** A read-only directory the host stages files to import in (else `transferDir`). */
  importDir?: string;
  /** Connection, stream-reset and watcher limits, over DEFAULT_LIMITS. */
  limits?: Partial<AgentLimits>;
}

export interface RunningAgent {
  /** The TCP address, when listening on TCP. */
  tcp?: net.AddressInfo;
  socket?: string;
  /** The supervised command, when one was asked for. */
  supervised?: SupervisedCommand;
  /** Base URL for HTTP clients, when listening on TCP. */
  url?: string;
  /** The cocoon-style exec listeners, when asked for. */
  cocoon?: CocoonListeners;
  context: AgentContext;
  close(): Promise<void>;
}

/** Starts tetherd's servers and returns once every listener is bound. */
export async function startAgent(options: AgentOptions = {}): Promise<RunningAgent> {
  const log = options.logger ?? createLogger(options.logLevel);
  const limits: AgentLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const context: AgentContext = {
    log,
    state: new AgentState(options),
    users: new UserDirectory(),
    ...(options.transferDir
      ? { transfer: { dir: options.transferDir, importDir: options.importDir, owner: options.socketOwner } }
      : {}),
  };
  if (options.inheritEnv) context.state.envVars = inheritedEnv(process.env);
  // Loaded before listening, so the first exec does not pay for it.
  const spawner = await preparePipeSpawner(log);
  // envd's Process service and tether.v1.Exec see the same processes.
  const processes = new ProcessTable();
  const services = [createProcessService(context, processes), createExecService(context, processes)];
  const ports = new PortWatcher(log, options.portScanIntervalMs);
  const exposer = options.exposeLoopback ? new LoopbackExposer(ports, log) : undefined;
  // The rest load on their first call: a new sandbox's first exec need not wait for them.
  let workspace: Promise<WorkspaceInit> | undefined;
  const workspaceInit = () => {
    workspace ??= import("./workspace/init.js").then(
      (m) => new m.WorkspaceInit(context, { cloneRetry: options.cloneRetry }),
    );
    return workspace;
  };
  const lazyServices = [
    new LazyService("filesystem.Filesystem", async () =>
      (await import("./files/service.js")).createFilesystemService(context, limits),
    ),
    new LazyService("tether.v1.Ports", async () =>
      (await import("./ports/service.js")).createPortsService(context, ports),
    ),
    new LazyService("tether.v1.Tunnel", async () => (await import("./tunnel/service.js")).createTunnelService(context)),
    new LazyService("tether.v1.Workspace", async () =>
      (await import("./workspace/service.js")).createWorkspaceService(context, await workspaceInit()),
    ),
    new LazyService("yolo.agent_container.Agent", async () =>
      (await import("./workspace/yolo-service.js")).createYoloService(
        context,
        await workspaceInit(),
        options.gitBaseUrl,
      ),
    ),
  ];
  const handler = createRequestHandler(context, services, lazyServices);
  // Only streams without the token count against the reset limit (see ConnectionGuard).
  const trusted = (headers: Record<string, string | string[] | undefined>) => isAuthorized(context.state, headers);

  const listeners: { server: net.Server; sockets: Set<net.Socket> }[] = [];
  const result: RunningAgent = { context, close };
  try {
    // Planned before listening: a command that cannot run (an unknown user) fails the start
    // before a host waiting for health can see the agent answer.
    const plan = options.supervise ? await planSupervisedCommand(context, options.supervise) : undefined;
    if (options.port !== false) {
      const tcp = createDualServer(handler, limits, trusted);
      listeners.push(tcp);
      result.tcp = await listenTcp(tcp.server, options.host ?? "127.0.0.1", options.port ?? AGENT_DEFAULT_PORT);
      // Once listening, a failed accept (out of descriptors) is logged, not thrown at the agent.
      tcp.server.on("error", (err) => log.error({ err }, "the TCP listener failed to accept a connection"));
      const host = result.tcp.family === "IPv6" ? `[${result.tcp.address}]` : result.tcp.address;
      result.url = `http://${host}:${result.tcp.port}`;
    }
    if (options.socket) {
      const unix = createDualServer(handler, limits, trusted);
      listeners.push(unix);
      const warning = await listenUnix(unix.server, options.socket, options.socketOwner);
      unix.server.on("error", (err) => log.error({ err }, "the unix socket listener failed to accept a connection"));
      if (warning) log.warn(warning);
      result.socket = options.socket;
    }
    await exposer?.start();
    if (options.cocoon) {
      const { startCocoon } = await import("./cocoon/listener.js");
      result.cocoon = await startCocoon(context, options.cocoon);
    }
    // Started once the agent listens, so a host waiting for health never misses it.
    if (plan) result.supervised = await SupervisedCommand.start(plan, log);
  } catch (err) {
    await close();
    throw err;
  }
  log.info(
    {
      tcp: result.url,
      socket: result.socket,
      auth: context.state.accessToken !== undefined,
      spawner,
    },
    "tetherd listening",
  );
  if (log instanceof AgentLogger) context.state.whenIdle(LOGGER_IDLE_MS, LOGGER_LATEST_MS, () => void log.load());
  // Temp files of uploads an earlier agent was killed in the middle of; not on the way to ready.
  context.state.whenIdle(LOGGER_IDLE_MS, LOGGER_LATEST_MS, () => {
    uploadJournal.sweep().then(
      (removed) => {
        if (removed.length > 0) log.info({ removed }, "removed the temp files of uploads cut off by an earlier agent");
      },
      (err: unknown) => log.warn({ err }, "could not sweep the temp files of earlier uploads"),
    );
  });
  return result;

  async function close(): Promise<void> {
    await result.cocoon?.close();
    await result.supervised?.stop(options.superviseStopTimeoutMs ?? DEFAULT_SUPERVISE_STOP_TIMEOUT_MS);
    await exposer?.close();
    // Also the ports service's, but that one may never have loaded.
    ports.close();
    await Promise.all([...services, ...lazyServices].map((s) => s.close()));
    await Promise.all(
      listeners.map(
        ({ server, sockets }) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            for (const socket of sockets) socket.destroy();
          }),
      ),
    );
  }
}
