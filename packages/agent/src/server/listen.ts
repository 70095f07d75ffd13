import { chmodSync, chownSync, lstatSync, unlinkSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { HttpRequest, HttpResponse } from "../http/respond.js";
import { type AgentLimits, DEFAULT_LIMITS } from "../limits.js";
import { ConnectionGuard } from "./connection-guard.js";

/**
 * HTTP/2 flow-control windows. Node's defaults (64 KiB) cap a stream at a few hundred
 * MB/s on loopback; large windows let output and uploads run at memory speed.
 */
const STREAM_WINDOW = 16 << 20;
const SESSION_WINDOW = 64 << 20;

/** The first bytes of every prior-knowledge HTTP/2 connection ("PRI * HTTP/2.0"). */
const H2_PREFACE_START = Buffer.from("PRI ");

export interface Endpoint {
  close(): Promise<void>;
}

/**
 * One listener that speaks HTTP/1.1 and h2c on the same socket: it peeks at the first
 * bytes of each connection and hands it to the matching Node server. Connections are
 * kept to `limits` (see ConnectionGuard).
 */
export function createDualServer(
  handler: (req: HttpRequest, res: HttpResponse) => void,
  limits: AgentLimits = DEFAULT_LIMITS,
  trusted?: (headers: http2.IncomingHttpHeaders) => boolean,
) {
  const h1 = http.createServer({ requestTimeout: 0, keepAliveTimeout: 65_000 }, handler);
  const h2 = http2.createServer(
    { settings: { initialWindowSize: STREAM_WINDOW, maxFrameSize: 1 << 20 }, maxSessionMemory: 64 },
    handler,
  );
  const guard = new ConnectionGuard(limits, trusted);
  // The socket being handed to the HTTP/2 server: it makes the session synchronously.
  let handing: net.Socket | undefined;
  h2.on("session", (session) => {
    session.on("connect", () => session.setLocalWindowSize(SESSION_WINDOW));
    if (handing) guard.http2(handing, session);
  });
  h1.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => guard.http1(req.socket, res));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    guard.opened(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    socket.once("readable", () => {
      const head: Buffer | null = socket.read();
      if (!head) return;
      socket.unshift(head);
      const isH2 = head.subarray(0, H2_PREFACE_START.length).equals(H2_PREFACE_START);
      if (!isH2) {
        h1.emit("connection", socket);
        return;
      }
      handing = socket;
      try {
        h2.emit("connection", socket);
      } finally {
        handing = undefined;
      }
    });
  });
  // Past it, node refuses new connections at once: every one costs a descriptor.
  server.maxConnections = limits.maxConnections;
  server.on("listening", () => guard.start());
  server.on("close", () => guard.stop());
  return { server, sockets };
}

export async function listenTcp(server: net.Server, host: string, port: number): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server.address() as net.AddressInfo;
}

/**
 * Listens on a unix socket usable by one user only (mode 0600): the agent's, or `owner`'s
 * (a host user reaching an agent that runs as root in a container). Resolves with a
 * warning when the socket's mode or owner could not be set (and a caveat applies).
 */
export async function listenUnix(
  server: net.Server,
  path: string,
  owner?: { uid: number; gid: number },
): Promise<string | undefined> {
  // The socket's file calls are synchronous: a few syscalls on one inode, at start, where
  // each thread-pool round trip (four of them) would delay the agent's readiness instead.
  removeStaleSocket(path);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return restrictSocket(path, owner);
}

/**
 * Makes the socket 0600 and owned by `owner`. gVisor's host-backed sockets refuse chmod,
 * chown and even lstat (EPERM): then the socket stays as the sandbox made it, which is
 * acceptable because the host directory holding it is private to the host user and
 * every call needs the access token; say so instead of failing. A socket we can see is
 * unsafe (group/other may write, i.e. connect) or owned by someone else is an error.
 */
function restrictSocket(path: string, owner: { uid: number; gid: number } | undefined): string | undefined {
  const refused = (err: unknown) =>
    ["EPERM", "ENOTSUP", "EOPNOTSUPP"].includes((err as NodeJS.ErrnoException).code ?? "");
  const inspect = () => {
    try {
      return lstatSync(path);
    } catch (err) {
      if (refused(err)) return undefined;
      throw err;
    }
  };
  try {
    chmodSync(path, 0o600);
    if (owner) chownSync(path, owner.uid, owner.gid);
    return undefined;
  } catch (err) {
    if (!refused(err)) throw err;
    const info = inspect();
    if (!info)
      return `cannot set the mode or owner of ${path} here (${(err as Error).message}); relying on its directory's permissions and the access token`;
    if ((info.mode & 0o022) !== 0) {
      throw new Error(
        `cannot chmod ${path} to 0600 and it is writable by others (mode ${(info.mode & 0o777).toString(8)})`,
      );
    }
    if (owner && info.uid !== owner.uid) {
      throw new Error(`cannot chown ${path} to ${owner.uid}:${owner.gid} (it belongs to uid ${info.uid})`);
    }
    return undefined;
  }
}

function removeStaleSocket(path: string): void {
  const info = lstatSync(path, { throwIfNoEntry: false });
  if (!info) return;
  if (!info.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  unlinkSync(path);
}
