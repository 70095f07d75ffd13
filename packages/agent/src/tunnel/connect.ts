import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";

/** Where a tunnel goes when it names no host. */
export const DEFAULT_HOST = "127.0.0.1";
/** How long connecting may take (an address that drops SYNs would hang for minutes). */
const CONNECT_TIMEOUT_MS = 30_000;
/** Bytes a tunnel's socket holds unwritten before its writer waits for it to drain. */
const WRITE_BUFFER = 1 << 20;

/** Whether `port` is a TCP port a tunnel may ask for (1-65535). */
export function isTcpPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

/** "host:port", bracketed for IPv6, for messages. */
export function targetName(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Connects to host:port; refusals and lookups fail with a Connect error that names both. */
export function connect(host: string, port: number, where: string, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // Room for a batch of the client's bytes written at once (16 KiB would take one DATA
    // frame); net.Socket passes it on to Duplex, its types leave it out.
    const options: net.NetConnectOpts & { writableHighWaterMark: number } = {
      host,
      port,
      allowHalfOpen: true,
      timeout: CONNECT_TIMEOUT_MS,
      writableHighWaterMark: WRITE_BUFFER,
    };
    const socket = net.connect(options);
    const fail = (err: ConnectError) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(err);
    };
    const onAbort = () => fail(new ConnectError(`tunnel to ${where} cancelled while connecting`, Code.Canceled));
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("timeout", () =>
      fail(new ConnectError(`connecting to ${where} inside the sandbox timed out`, Code.Unavailable)),
    );
    socket.once("error", (err) => fail(connectError(err, where)));
    socket.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("timeout");
      socket.removeAllListeners("error");
      socket.setTimeout(0);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

function connectError(err: NodeJS.ErrnoException, where: string): ConnectError {
  switch (err.code) {
    case "ECONNREFUSED":
      return new ConnectError(
        `connection refused: nothing listens on ${where} inside the sandbox`,
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new ConnectError(`cannot resolve ${where} inside the sandbox (${err.code})`, Code.Unavailable);
    default:
      return new ConnectError(
        `cannot connect to ${where} inside the sandbox: ${err.message}`,
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
  }
}
