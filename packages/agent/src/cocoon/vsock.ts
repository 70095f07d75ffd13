import { closeSync, existsSync } from "node:fs";
import net from "node:net";

/** The host's context id: the only peer a guest agent accepts. */
export const VSOCK_HOST_CID = 2;

type VsockAddon = typeof import("@tether/vsock");

let addon: Promise<VsockAddon> | undefined;

/** Loads @tether/vsock (our N-API addon) on first use: most agents never listen on vsock. */
function loadAddon(): Promise<VsockAddon> {
  addon ??= import("@tether/vsock").then((m) => ((m as { default?: VsockAddon }).default ?? m) as VsockAddon);
  return addon;
}

/**
 * Wraps a connected stream socket's fd in a net.Socket. net.Socket({ fd }) refuses vsock
 * (libuv's uv_guess_handle knows only TCP and unix sockets), but libuv's pipe handle
 * reads and writes any stream socket, so the fd is opened with Node's own Pipe handle
 * (process.binding("pipe_wrap"), on Node's allow-list for process.binding).
 */
export function socketFromFd(fd: number): net.Socket {
  const binding = (process as unknown as { binding(name: string): unknown }).binding("pipe_wrap") as {
    Pipe: new (type: number) => { open(fd: number): number };
    constants: { SOCKET: number };
  };
  const handle = new binding.Pipe(binding.constants.SOCKET);
  const err = handle.open(fd);
  if (err) {
    closeSync(fd);
    throw new Error(`cannot wrap vsock fd ${fd} (libuv error ${err})`);
  }
  // Half-open allowed: a session answers a peer's half-close with its error frame.
  return new net.Socket({ handle, readable: true, writable: true, allowHalfOpen: true } as net.SocketConstructorOpts);
}

export interface VsockServer {
  port: number;
  close(): void;
}

/** Why vsock cannot be used here, in words a user can act on. */
export function explainVsockFailure(err: NodeJS.ErrnoException, what: string): Error {
  const hints: string[] = [];
  if (err.code === "EAFNOSUPPORT") hints.push("the kernel has no AF_VSOCK support (module vsock not loaded?)");
  if (!existsSync("/dev/vsock")) hints.push("/dev/vsock is missing: this is not a VM with a vsock device");
  if (err.code === "EADDRINUSE") hints.push("another listener holds this port");
  return new Error(`${what}: ${err.message}${hints.length ? ` (${hints.join("; ")})` : ""}`, { cause: err });
}

/**
 * Listens on AF_VSOCK `port` (0 picks one) for any local CID. Connections from a peer
 * other than the host (CID 2) are closed at once and reported through `onRejected`.
 */
export async function listenVsock(
  port: number,
  handlers: {
    onConnection(socket: net.Socket): void;
    onRejected(cid: number): void;
    onError(err: Error): void;
  },
): Promise<VsockServer> {
  const vsock = await loadAddon();
  let listening: { fd: number; port: number };
  try {
    listening = vsock.listen(port);
  } catch (err) {
    throw explainVsockFailure(err as NodeJS.ErrnoException, `cannot listen on vsock port ${port}`);
  }
  vsock.accept(listening.fd, (fd, cid) => {
    if (fd < 0) {
      handlers.onError(new Error(`vsock accept failed (errno ${-fd})`));
      return;
    }
    if (cid !== VSOCK_HOST_CID) {
      closeSync(fd);
      handlers.onRejected(cid);
      return;
    }
    try {
      handlers.onConnection(socketFromFd(fd));
    } catch (err) {
      handlers.onError(err as Error);
    }
  });
  let closed = false;
  return {
    port: listening.port,
    close() {
      if (closed) return;
      closed = true;
      vsock.stop(listening.fd);
    },
  };
}

/** Connects to cid:port over vsock (a blocking connect, for the command-line client). */
export async function connectVsock(cid: number, port: number): Promise<net.Socket> {
  const vsock = await loadAddon();
  let fd: number;
  try {
    fd = vsock.connect(cid, port);
  } catch (err) {
    throw explainVsockFailure(err as NodeJS.ErrnoException, `cannot connect to vsock ${cid}:${port}`);
  }
  return socketFromFd(fd);
}
