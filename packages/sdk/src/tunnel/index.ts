import http2 from "node:http2";
import { Duplex } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { endStreamFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { Tunnel, TunnelRequestSchema, TunnelResponseSchema } from "@tether/protocol/tunnel";
import { type Connection, readAll, responseOf } from "../connection.js";
import { AgentUnavailableError, PortUnreachableError, TetherError, toTetherError } from "../errors.js";
import { EnvelopeReader, FLAG_COMPRESSED, FLAG_END_STREAM } from "../server-stream.js";

export interface TunnelOptions {
  /** Host or address to reach, resolved inside the sandbox; default 127.0.0.1. */
  host?: string;
  /** Aborting destroys the tunnel (or stops it opening). */
  signal?: AbortSignal;
}

/** Where the tunnel arrived inside the sandbox. */
export interface TunnelTarget {
  address: string;
  port: number;
}

/** Bytes per message: well under the agent's 16 MiB message limit, large enough to be cheap. */
const MAX_MESSAGE_DATA = 64 << 10;
/**
 * Bytes sent that the agent has not yet handed to the connection (it says so with
 * `written` messages). Kept below what the kernel's socket buffers hold (a unix socket's
 * are about 200 KB), so the HTTP/2 session never has a write pending long: Node's HTTP/2
 * stops reading while its write is pending, and two peers both sending bulk data could
 * otherwise wait for each other forever (see tunnel.proto).
 */
const UNACKED_LIMIT = 128 << 10;
/** Protobuf tag of TunnelRequest.data: field 2, length-delimited. */
const DATA_TAG = (2 << 3) | 2;
const PATH = `/${Tunnel.typeName}/${Tunnel.method.open.name}`;

/**
 * Opens a TCP connection to `port` inside the sandbox through the agent's own connection
 * (`tether.v1.Tunnel`), and resolves with it as a Duplex once it is up. Flow control
 * holds end to end: write returns false once the tunnel is full, and a paused reader
 * pauses the sandbox side. `end()` half-closes (FIN); the readable ends when the sandbox
 * side closes its half. Throws PortUnreachableError when nothing listens there.
 */
export async function openTunnel(
  connection: Connection,
  port: number,
  options: TunnelOptions = {},
): Promise<TunnelStream> {
  const host = options.host ?? "127.0.0.1";
  const where = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  const what = `tunnel to ${where}`;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TetherError(`${what}: ${port} is not a TCP port (1-65535)`);
  }
  let stream: http2.ClientHttp2Stream;
  try {
    stream = await connection.request("POST", PATH, {
      ...connection.headers(),
      "content-type": "application/connect+proto",
      "connect-protocol-version": "1",
    });
  } catch (err) {
    throw toTetherError(err, what, connection.address);
  }
  const open = toBinary(
    TunnelRequestSchema,
    create(TunnelRequestSchema, { message: { case: "open", value: { port, host, acks: true } } }),
  );
  const envelope = Buffer.allocUnsafe(5 + open.length);
  envelope[0] = 0;
  envelope.writeUInt32BE(open.length, 1);
  envelope.set(open, 5);
  stream.write(envelope);
  const tunnel = new TunnelStream(stream, where, connection.address);
  const abort = () => tunnel.destroy(new TetherError(`${what}: aborted`));
  if (options.signal?.aborted) abort();
  options.signal?.addEventListener("abort", abort, { once: true });
  tunnel.once("close", () => options.signal?.removeEventListener("abort", abort));
  try {
    const headers = await responseOf(stream);
    const status = Number(headers[":status"]);
    if (status !== 200) {
      const body = await readAll(stream);
      throw errorFromJsonBytes(body, undefined, new ConnectError(`HTTP ${status}`, Code.Unknown));
    }
    await tunnel.opened;
    return tunnel;
  } catch (err) {
    tunnel.destroy();
    throw tunnelError(err, what, host, port, connection.address);
  }
}

/** A TCP connection inside the sandbox, as a Duplex. */
export class TunnelStream extends Duplex {
  /** Where it arrived, once open. */
  target: TunnelTarget | undefined;
  /** Resolves with the target once the agent connected; rejects if it could not. */
  readonly opened: Promise<TunnelTarget>;
  private resolveOpened!: (target: TunnelTarget) => void;
  private rejectOpened!: (err: unknown) => void;
  private readonly reader = new EnvelopeReader();
  /** The agent sent its end-of-stream message: nothing more arrives. */
  private finished = false;
  private eof = false;
  private unacked = 0;
  private ackWaiter: { resolve(): void; reject(err: Error): void } | undefined;

  constructor(
    private readonly h2: http2.ClientHttp2Stream,
    /** "host:port", for error messages. */
    readonly where: string,
    private readonly agentAddress: string,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 1 << 20, writableHighWaterMark: 1 << 20 });
    this.opened = new Promise((resolve, reject) => {
      this.resolveOpened = resolve;
      this.rejectOpened = reject;
    });
    this.opened.catch(() => {});
    h2.on("data", (chunk: Buffer) => this.received(chunk));
    h2.on("error", (err) => this.fail(err));
    h2.on("close", () => {
      if (this.finished) return;
      const reset = h2.rstCode && h2.rstCode !== http2.constants.NGHTTP2_NO_ERROR ? ` (reset, code ${h2.rstCode})` : "";
      this.fail(new AgentUnavailableError(`tunnel to ${where}: the agent's stream closed before the end${reset}`));
    });
  }

  private received(chunk: Buffer): void {
    this.reader.push(chunk);
    for (let env = this.reader.next(); env; env = this.reader.next()) {
      if (env.flags & FLAG_END_STREAM) {
        this.finished = true;
        const end = endStreamFromJson(env.data);
        if (end.error) {
          this.fail(end.error);
          return;
        }
        this.rejectOpened(new TetherError(`tunnel to ${this.where}: the agent ended it before it opened`));
        if (!this.eof) this.push(null);
        return;
      }
      if (env.flags & FLAG_COMPRESSED) {
        this.fail(new ConnectError("the agent sent a compressed message, which was not asked for", Code.Internal));
        return;
      }
      const message = fromBinary(TunnelResponseSchema, env.data).message;
      switch (message.case) {
        case "opened":
          // Set at once: an error in the same chunk must find the tunnel open.
          this.target = { address: message.value.address, port: message.value.port };
          this.resolveOpened(this.target);
          break;
        case "data": {
          const data = message.value;
          if (!this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength))) this.h2.pause();
          break;
        }
        case "eof":
          this.eof = true;
          this.push(null);
          break;
        case "written": {
          this.unacked -= Number(message.value);
          const waiter = this.ackWaiter;
          this.ackWaiter = undefined;
          waiter?.resolve();
          break;
        }
      }
    }
  }

  private fail(err: unknown): void {
    this.rejectOpened(err);
    if (this.target === undefined) return;
    const [host, port] = splitWhere(this.where);
    this.destroy(tunnelError(err, `tunnel to ${this.where}`, host, port, this.agentAddress));
  }

  override _read(): void {
    this.h2.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.send(chunk).then(() => callback(), callback);
  }

  /** Sends in messages of at most 64 KiB, each once the unacknowledged bytes leave room. */
  private async send(chunk: Buffer): Promise<void> {
    for (let offset = 0; offset < chunk.length; ) {
      const part = chunk.subarray(offset, offset + MAX_MESSAGE_DATA);
      offset += part.length;
      while (this.unacked > 0 && this.unacked + part.length > UNACKED_LIMIT) {
        await new Promise<void>((resolve, reject) => {
          this.ackWaiter = { resolve, reject };
        });
      }
      this.unacked += part.length;
      // Envelope and protobuf field header by hand, so the bytes themselves are never copied.
      this.h2.write(dataHeader(part.length));
      this.h2.write(part);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.h2.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Both halves ended cleanly: the agent ends the call once the last bytes are delivered;
    // cancelling now could cut them off.
    const clean = !error && this.readableEnded && this.writableFinished;
    this.ackWaiter?.reject(error ?? new Error("the tunnel was destroyed"));
    this.ackWaiter = undefined;
    if (!this.h2.closed && !clean) this.h2.close(http2.constants.NGHTTP2_CANCEL);
    callback(error);
  }
}

/** The 5-byte Connect envelope plus the field tag and varint length of TunnelRequest.data. */
function dataHeader(length: number): Buffer {
  const varint: number[] = [];
  let n = length;
  while (n > 0x7f) {
    varint.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  varint.push(n);
  const header = Buffer.allocUnsafe(5 + 1 + varint.length);
  header[0] = 0;
  header.writeUInt32BE(1 + varint.length + length, 1);
  header[5] = DATA_TAG;
  header.set(varint, 6);
  return header;
}

function splitWhere(where: string): [string, number] {
  const colon = where.lastIndexOf(":");
  const host = where.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return [host, Number(where.slice(colon + 1))];
}

/** An Unavailable from the agent (it answered, so it is reachable) means the port is. */
function tunnelError(err: unknown, what: string, host: string, port: number, address: string): Error {
  if (err instanceof TetherError) return err;
  if (err instanceof ConnectError && err.code === Code.Unavailable) {
    return new PortUnreachableError(`${what}: ${err.rawMessage}`, { host, port, cause: err });
  }
  return toTetherError(err, what, address);
}
