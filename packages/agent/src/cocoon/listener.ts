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
  /** Listen on this TCP address. */
  tcp?: { host: string; port: number };
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
  const accept = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    new CocoonSession(ctx, socket, reseedPaths);
  };
  const servers: net.Server[] = [];
  let vsock: VsockServer | undefined;
  const result: CocoonListeners = { close };
  try {
    if (options.socket) {
      const server = net.createServer(accept);
      servers.push(server);
      const warning = await listenUnix(server, options.socket);
      if (warning) ctx.log.warn(warning);
      result.socket = options.socket;
    }
    if (options.tcp) {
      const server = net.createServer(accept);
      servers.push(server);
      result.tcp = await listenTcp(server, options.tcp.host, options.tcp.port);
    }
    if (options.vsockPort !== undefined) {
      vsock = await listenVsock(options.vsockPort, {
        onConnection: accept,
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
