import net from "node:net";
import type { AgentContext } from "../context.js";
import { listenTcp, listenUnix } from "../server/listen.js";
import { DEFAULT_RESEED_PATHS, type ReseedPaths } from "./reseed.js";
import { CocoonSession } from "./session.js";
import { listenVsock, type VsockServer } from "./vsock.js";

export interface CocoonOptions {
  /** Listen on this AF_VSOCK port (any CID); only the host (CID 2) may connect. */
  vsockPort?: number;
  /** Listen on this unix socket (mode 0600). */
  socket?: string;
  /**
   * Listen on this TCP address. While the agent has an access token, a session must send
   * `auth{token}` first. A non-loopback host is refused unless `insecure` (anyone who can
   * reach it runs commands as the agent's user, and the token travels in clear text).
   */
  tcp?: { host: string; port: number; insecure?: boolean };
  /** Where reseed writes; the real system paths by default. */
  reseedPaths?: ReseedPaths;
}

/** The cocoon listeners that are bound. */
export interface CocoonListeners {
  vsockPort?: number;
  socket?: string;
  tcp?: net.AddressInfo;
  close(): Promise<void>;
}

/**
 * Starts the cocoon-style exec listeners. Every transport hands its connected sockets to
 * the same session code, so the unix socket exercises what vsock runs.
 */
export async function startCocoon(ctx: AgentContext, options: CocoonOptions): Promise<CocoonListeners> {
  const reseedPaths = options.reseedPaths ?? DEFAULT_RESEED_PATHS;
  const sockets = new Set<net.Socket>();
  const accept = (socket: net.Socket, requireToken = false) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    new CocoonSession(ctx, socket, reseedPaths, requireToken);
  };
  const servers: net.Server[] = [];
  let vsock: VsockServer | undefined;
  const result: CocoonListeners = { close };
  try {
    if (options.socket) {
      const server = net.createServer({ allowHalfOpen: true }, (socket) => accept(socket));
      servers.push(server);
      const warning = await listenUnix(server, options.socket);
      if (warning) ctx.log.warn(warning);
      result.socket = options.socket;
    }
    if (options.tcp) {
      const { host, port, insecure } = options.tcp;
      if (!insecure && !isLoopback(host)) {
        throw new CocoonListenerError(
          `cocoon TCP on ${host}:${port} would let anyone who reaches it run commands as this agent's user ` +
            "(the access token travels in clear text): listen on a loopback address, or pass --cocoon-tcp-insecure",
        );
      }
      const server = net.createServer({ allowHalfOpen: true }, (socket) => accept(socket, true));
      servers.push(server);
      result.tcp = await listenTcp(server, host, port);
      if (!isLoopback(host)) {
        ctx.log.warn(
          { host, port: result.tcp.port },
          "cocoon TCP beyond loopback (--cocoon-tcp-insecure): the access token and every byte travel in clear text",
        );
      }
      if (ctx.state.accessToken === undefined) {
        ctx.log.warn(
          { host, port: result.tcp.port },
          "cocoon TCP without an access token: anyone who can connect runs commands as this agent's user",
        );
      }
    }
    if (options.vsockPort !== undefined) {
      vsock = await listenVsock(options.vsockPort, {
        onConnection: (socket) => accept(socket),
        onRejected: (cid) => ctx.log.warn({ cid }, "cocoon: refused a vsock peer that is not the host (CID 2)"),
        onError: (err) => ctx.log.error({ err }, "cocoon: vsock accept failed"),
      });
      result.vsockPort = vsock.port;
    }
  } catch (err) {
    await close();
    throw err;
  }
  ctx.log.info({ vsock: result.vsockPort, socket: result.socket, tcp: result.tcp }, "cocoon exec listening");
  return result;

  async function close(): Promise<void> {
    vsock?.close();
    // Sessions first: server.close() waits for every open connection to end.
    for (const socket of sockets) socket.destroy();
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
          }),
      ),
    );
  }
}

/** A cocoon listener the agent will not open as asked. */
export class CocoonListenerError extends Error {
  override name = "CocoonListenerError";
}

/** 127.0.0.0/8, ::1 (also v4-mapped) and "localhost"; a name that merely resolves there does not count. */
function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  const v4 = host.startsWith("::ffff:") ? host.slice(7) : host;
  return net.isIPv4(v4) && v4.startsWith("127.");
}
