import http2 from "node:http2";
import { Duplex } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { endStreamFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import {
  TUNNEL_ADDRESS_HEADER,
  TUNNEL_ERROR_TRAILER,
  TUNNEL_PATH,
  TUNNEL_UPLOAD_HEADER,
  TUNNEL_WRITE_PATH,
} from "@tether/protocol/constants";
import { Tunnel, TunnelRequestSchema, TunnelResponseSchema, TunnelWriteRequestSchema } from "@tether/protocol/tunnel";
import { type Connection, readAll, responseOf } from "../connection.js";
import {
  AgentUnavailableError,
  httpError,
  messageOf,
  PortUnreachableError,
  TetherError,
  toTetherError,
} from "../errors.js";
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
 * Bytes the `Write` stream may hold unsent before write() waits for it to drain: more
 * than its default high-water mark (16 KiB, less than one message), so the next messages
 * are ready while the agent works through the last; still a bound, so a slow sandbox
 * side holds the client back.
 */
const UPLOAD_BUFFER = 1 << 20;
/**
 * Only towards an agent without `Write` (which then sends `written` acknowledgements): the
 * bytes sent on the `Open` stream that the agent has not yet handed to the connection.
 * Kept below what the kernel's socket buffers hold (a unix socket's are about 200 KB), so
 * the HTTP/2 session never has a write pending long: Node's HTTP/2 stops reading while its
 * write is pending, and two peers both sending bulk data on one connection could otherwise
 * wait for each other forever (see tunnel.proto).
 */
const UNACKED_LIMIT = 128 << 10;
/** Protobuf tag of TunnelRequest.data and TunnelWriteRequest.data: field 2, length-delimited. */
const DATA_TAG = (2 << 3) | 2;
const PATH = `/${Tunnel.typeName}/${Tunnel.method.open.name}`;
const WRITE_PATH = `/${Tunnel.typeName}/${Tunnel.method.write.name}`;
const CONNECT_HEADERS = { "content-type": "application/connect+proto", "connect-protocol-version": "1" };
/** Connections whose agent has no raw tunnel endpoints (it predates them): their tunnels use tether.v1.Tunnel. */
const withoutRawTunnels = new WeakSet<Connection>();

/**
 * Opens a TCP connection to `port` inside the sandbox through the agent's own connection
 * (`tether.v1.Tunnel`), and resolves with it as a Duplex once it is up. Flow control
 * holds end to end: write returns false once the tunnel is full, and a paused reader
 * pauses the sandbox side. `end()` half-closes (FIN); the readable ends when the sandbox
 * side closes its half. Throws PortUnreachableError when nothing listens there.
 *
 * The sandbox side's bytes come as the response of `POST /tunnel`, on the connection for
 * RPCs; the client's go as the body of `POST /tunnel/write`, on the connection for bulk
 * sent to the agent, so each connection carries bulk one way (see Connection) and a
 * tunnel busy both ways cannot deadlock. Both are raw bytes, no envelopes or protobuf per
 * chunk. Towards an agent without those endpoints the same split runs over
 * `tether.v1.Tunnel` (`Open` and `Write`).
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
  if (!withoutRawTunnels.has(connection)) {
    const tunnel = await openRawTunnel(connection, port, host, where, options.signal);
    if (tunnel) return tunnel;
    withoutRawTunnels.add(connection);
  }
  return openConnectTunnel(connection, port, host, where, options.signal);
}

/**
 * `POST /tunnel` and `POST /tunnel/write`; undefined when the agent has no such endpoint
 * (it predates them).
 */
async function openRawTunnel(
  connection: Connection,
  port: number,
  host: string,
  where: string,
  signal: AbortSignal | undefined,
): Promise<TunnelStream | undefined> {
  const what = `tunnel to ${where}`;
  const query = new URLSearchParams({ port: String(port), host });
  let stream: http2.ClientHttp2Stream;
  try {
    stream = await connection.request("POST", `${TUNNEL_PATH}?${query}`, connection.headers());
  } catch (err) {
    throw toTetherError(err, what, connection.address);
  }
  // Nothing goes on this stream: the client's bytes go with /tunnel/write.
  stream.end();
  const abort = () => stream.close(http2.constants.NGHTTP2_CANCEL);
  if (signal?.aborted) abort();
  signal?.addEventListener("abort", abort, { once: true });
  try {
    const headers = await responseOf(stream);
    const status = Number(headers[":status"]);
    if (status !== 200) {
      const body = (await readAll(stream)).toString("utf8");
      if (status === 404 && body.includes("no such endpoint")) return undefined;
      // The agent could not connect there (refused, unresolvable, timed out).
      if (status === 502) throw new PortUnreachableError(`${what}: ${messageOf(body)}`, { host, port });
      throw httpError(status, body, what);
    }
    const upload = await connection.request(
      "POST",
      `${TUNNEL_WRITE_PATH}?${new URLSearchParams({ id: String(headers[TUNNEL_UPLOAD_HEADER] ?? "") })}`,
      connection.headers(),
      { upstream: true },
    );
    const tunnel = new TunnelStream(stream, where, connection.address, true);
    tunnel.openedRaw({ address: String(headers[TUNNEL_ADDRESS_HEADER] ?? host), port });
    tunnel.uploadOn(upload);
    signal?.removeEventListener("abort", abort);
    whenAborted(tunnel, signal, what);
    return tunnel;
  } catch (err) {
    signal?.removeEventListener("abort", abort);
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    if (signal?.aborted) throw new TetherError(`${what}: aborted`);
    throw toTetherError(err, what, connection.address);
  }
}

/** Aborting `signal` destroys the tunnel. */
function whenAborted(tunnel: TunnelStream, signal: AbortSignal | undefined, what: string): void {
  const abort = () => tunnel.destroy(new TetherError(`${what}: aborted`));
  if (signal?.aborted) abort();
  signal?.addEventListener("abort", abort, { once: true });
  tunnel.once("close", () => signal?.removeEventListener("abort", abort));
}

/** `tether.v1.Tunnel`: `Open`, and `Write` for the client's bytes where the agent has it. */
async function openConnectTunnel(
  connection: Connection,
  port: number,
  host: string,
  where: string,
  signal: AbortSignal | undefined,
): Promise<TunnelStream> {
  const what = `tunnel to ${where}`;
  let stream: http2.ClientHttp2Stream;
  try {
    stream = await connection.request("POST", PATH, { ...connection.headers(), ...CONNECT_HEADERS });
  } catch (err) {
    throw toTetherError(err, what, connection.address);
  }
  const open = toBinary(
    TunnelRequestSchema,
    // `acks` for an agent that predates `separate_upload`: it then takes the bytes on this stream.
    create(TunnelRequestSchema, { message: { case: "open", value: { port, host, acks: true, separateUpload: true } } }),
  );
  stream.write(envelope(open));
  const tunnel = new TunnelStream(stream, where, connection.address);
  whenAborted(tunnel, signal, what);
  try {
    const headers = await responseOf(stream);
    const status = Number(headers[":status"]);
    if (status !== 200) {
      const body = await readAll(stream);
      throw errorFromJsonBytes(body, undefined, new ConnectError(`HTTP ${status}`, Code.Unknown));
    }
    await tunnel.opened;
    const uploadId = tunnel.uploadId;
    if (uploadId) {
      const upload = await connection.request(
        "POST",
        WRITE_PATH,
        { ...connection.headers(), ...CONNECT_HEADERS },
        { upstream: true },
      );
      upload.write(
        envelope(
          toBinary(
            TunnelWriteRequestSchema,
            create(TunnelWriteRequestSchema, { message: { case: "uploadId", value: uploadId } }),
          ),
        ),
      );
      tunnel.uploadOn(upload);
      // Nothing more goes on the Open stream.
      stream.end();
    }
    return tunnel;
  } catch (err) {
    tunnel.destroy();
    throw tunnelError(err, what, host, port, connection.address);
  }
}

/**
 * A TCP connection inside the sandbox, as a Duplex: over the raw endpoints (`raw`), or
 * over tether.v1.Tunnel's enveloped messages.
 */
export class TunnelStream extends Duplex {
  /** Where it arrived, once open. */
  target: TunnelTarget | undefined;
  /** Resolves with the target once the agent connected; rejects if it could not. */
  readonly opened: Promise<TunnelTarget>;
  /** @internal The id the `Write` call for the client's bytes names; empty from an agent without `Write`. */
  uploadId = "";
  private resolveOpened!: (target: TunnelTarget) => void;
  private rejectOpened!: (err: unknown) => void;
  private readonly reader = new EnvelopeReader();
  /** The agent sent its end-of-stream message: nothing more arrives. */
  private finished = false;
  private eof = false;
  private unacked = 0;
  private ackWaiter: { resolve(): void; reject(err: Error): void } | undefined;
  /** The `Write` call carrying the client's bytes; unset towards an agent without it. */
  private upload: http2.ClientHttp2Stream | undefined;
  /** The agent ended the `Write` call before the client did: the tunnel closed, later bytes go nowhere. */
  private uploadEnded = false;
  /** Why a raw tunnel's response ended, from its trailer: the socket failed. */
  private rawError: string | undefined;

  constructor(
    private readonly h2: http2.ClientHttp2Stream,
    /** "host:port", for error messages. */
    readonly where: string,
    private readonly agentAddress: string,
    /** Bytes come and go as they are (`POST /tunnel`, `POST /tunnel/write`), not in tether.v1.Tunnel messages. */
    readonly raw = false,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 1 << 20, writableHighWaterMark: 1 << 20 });
    this.opened = new Promise((resolve, reject) => {
      this.resolveOpened = resolve;
      this.rejectOpened = reject;
    });
    this.opened.catch(() => {});
    if (raw) {
      h2.on("data", (chunk: Buffer) => {
        if (!this.push(chunk)) h2.pause();
      });
      h2.once("trailers", (trailers) => {
        const error = trailers[TUNNEL_ERROR_TRAILER];
        if (error !== undefined) this.rawError = String(error);
      });
      // The response's end is the sandbox side's FIN, unless a trailer said the socket failed.
      h2.once("end", () => {
        this.finished = true;
        if (this.rawError === undefined) this.push(null);
        else this.fail(new ConnectError(this.rawError, Code.Aborted));
      });
    } else {
      h2.on("data", (chunk: Buffer) => this.received(chunk));
    }
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
          this.uploadId = message.value.uploadId;
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

  /** @internal A raw tunnel is open once its response came: where it arrived. */
  openedRaw(target: TunnelTarget): void {
    this.target = target;
    this.resolveOpened(target);
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

  /**
   * Sends the client's bytes with `upload`, a `Write` call (or `POST /tunnel/write`) on the
   * connection for bulk sent to the agent. Its response says the agent took them all, or
   * an error; an early OK means the tunnel closed (the `Open` call or `POST /tunnel` tells how).
   */
  uploadOn(upload: http2.ClientHttp2Stream): void {
    this.upload = upload;
    const reader = new EnvelopeReader();
    let answered = false;
    const failed = (err: unknown) => {
      if (!this.destroyed) this.fail(err);
    };
    upload.on("error", failed);
    upload.once("response", (headers) => {
      const status = Number(headers[":status"]);
      if (this.raw && (status === 200 || status === 404)) {
        // All taken, or (early, or 404: the tunnel had closed) nothing more is: the
        // response to /tunnel tells how the tunnel ended.
        answered = true;
        this.uploadEnded = true;
        upload.resume();
        return;
      }
      if (status !== 200) {
        answered = true;
        readAll(upload).then(
          (body) => failed(errorFromJsonBytes(body, undefined, new ConnectError(`HTTP ${status}`, Code.Unknown))),
          failed,
        );
      }
    });
    upload.on("data", (chunk: Buffer) => {
      if (answered) return;
      reader.push(chunk);
      for (let env = reader.next(); env; env = reader.next()) {
        if (!(env.flags & FLAG_END_STREAM)) continue;
        answered = true;
        const end = endStreamFromJson(env.data);
        if (end.error) failed(end.error);
        else this.uploadEnded = true;
      }
    });
    upload.on("close", () => {
      if (!answered) {
        failed(new AgentUnavailableError(`tunnel to ${this.where}: the agent's write stream closed before the end`));
      }
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.upload) this.sendUpload(this.upload, chunk, callback);
    else this.send(chunk).then(() => callback(), callback);
  }

  /** Flow control comes from the upload's own HTTP/2 stream: the callback waits for it to drain. */
  private sendUpload(upload: http2.ClientHttp2Stream, chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.uploadEnded) {
      callback();
      return;
    }
    if (this.raw) {
      upload.write(chunk);
    } else {
      for (let offset = 0; offset < chunk.length; ) {
        const part = chunk.subarray(offset, offset + MAX_MESSAGE_DATA);
        offset += part.length;
        upload.write(dataHeader(part.length));
        upload.write(part);
      }
    }
    // 'drain' comes once the stream's buffer is empty, if a write found it full.
    if (upload.writableLength < UPLOAD_BUFFER || !upload.writableNeedDrain) {
      callback();
      return;
    }
    const done = () => {
      upload.off("drain", done);
      upload.off("close", done);
      callback();
    };
    upload.on("drain", done);
    upload.on("close", done);
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
    if (this.upload && this.uploadEnded) callback();
    else (this.upload ?? this.h2).end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Both halves ended cleanly: the agent ends the call once the last bytes are delivered;
    // cancelling now could cut them off.
    const clean = !error && this.readableEnded && this.writableFinished;
    this.ackWaiter?.reject(error ?? new TetherError("the tunnel was destroyed"));
    this.ackWaiter = undefined;
    if (!this.h2.closed && !clean) this.h2.close(http2.constants.NGHTTP2_CANCEL);
    if (this.upload && !this.upload.closed && !clean) this.upload.close(http2.constants.NGHTTP2_CANCEL);
    callback(error);
  }
}

/** A whole message in a Connect envelope. */
function envelope(message: Uint8Array): Buffer {
  const bytes = Buffer.allocUnsafe(5 + message.length);
  bytes[0] = 0;
  bytes.writeUInt32BE(message.length, 1);
  bytes.set(message, 5);
  return bytes;
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
