import type http2 from "node:http2";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { Filesystem, FileType, type EntryInfo as WireEntryInfo } from "@tether/protocol/filesystem";
import { type Connection, readAll, responseOf } from "../connection.js";
import {
  AgentProtocolError,
  AlreadyExistsError,
  httpError,
  InvalidArgumentError,
  messageOf,
  NotFoundError,
  TransferUnavailableError,
  toTetherError,
} from "../errors.js";

export type FileKind = "file" | "dir" | "symlink" | "unknown";

/** What the agent knows about a file or directory. */
export interface EntryInfo {
  name: string;
  type: FileKind;
  path: string;
  size: number;
  /** Unix mode bits (permissions and type). */
  mode: number;
  /** `rwxr-xr-x` style. */
  permissions: string;
  owner: string;
  group: string;
  modifiedTime?: Date;
  symlinkTarget?: string;
  metadata: Record<string, string>;
}

/** What `write` reports for the file it wrote. */
export interface WriteInfo {
  name: string;
  type: string;
  path: string;
}

/** A file copied through the directory the host shares with the sandbox. */
export interface TransferredFile {
  /** The path in the sandbox. */
  path: string;
  size: number;
  /** Permission bits of the file in the sandbox. */
  mode: number;
}

/** Anything `write` can upload; streams are sent as they are read, never held whole. */
export type WriteData = string | Uint8Array | Readable | AsyncIterable<Uint8Array> | WebReadableStream<Uint8Array>;

export interface FileOptions {
  /** Unix user to act as; relative paths resolve against that user's home. */
  user?: string;
}

/** Files in the agent: `agent.files`. */
export class Files {
  private readonly client: Client<typeof Filesystem>;

  constructor(private readonly connection: Connection) {
    this.client = createClient(Filesystem, connection.transport);
  }

  /** Reads a file as text (default), bytes, or a stream. */
  read(path: string, options?: FileOptions & { format?: "text" }): Promise<string>;
  read(path: string, options: FileOptions & { format: "bytes" }): Promise<Uint8Array>;
  read(path: string, options: FileOptions & { format: "stream" }): Promise<Readable>;
  async read(
    path: string,
    options: FileOptions & { format?: "text" | "bytes" | "stream" } = {},
  ): Promise<string | Uint8Array | Readable> {
    const what = `read ${path}`;
    const stream = await this.open("GET", path, options.user, what, {});
    try {
      const headers = await responseOf(stream);
      const status = Number(headers[":status"]);
      if (status !== 200) throw httpError(status, (await readAll(stream)).toString("utf8"), what);
      if (options.format === "stream") return stream;
      const body = await readAll(stream);
      return options.format === "bytes"
        ? new Uint8Array(body.buffer, body.byteOffset, body.length)
        : body.toString("utf8");
    } catch (err) {
      stream.destroy();
      throw toTetherError(err, what, this.connection.address);
    }
  }

  /**
   * Writes a file (creating parent directories), streaming the data as it comes. `mode`
   * sets its permission bits; without it a new file gets 0666 less the agent's umask and
   * a replaced file keeps its old bits.
   */
  async write(path: string, data: WriteData, options: FileOptions & { mode?: number } = {}): Promise<WriteInfo> {
    const what = `write ${path}`;
    if (
      options.mode !== undefined &&
      !(Number.isInteger(options.mode) && options.mode >= 0 && options.mode <= 0o7777)
    ) {
      throw new InvalidArgumentError(`${what}: mode ${options.mode} is not permission bits (0 to 0o7777)`);
    }
    const query: Record<string, string> = options.mode !== undefined ? { mode: options.mode.toString(8) } : {};
    const stream = await this.open(
      "POST",
      path,
      options.user,
      what,
      {
        "content-type": "application/octet-stream",
      },
      query,
    );
    const response = responseOf(stream).then(async (headers) => ({
      status: Number(headers[":status"]),
      body: (await readAll(stream)).toString("utf8"),
    }));
    const upload =
      typeof data === "string" || data instanceof Uint8Array
        ? new Promise<void>((resolve, reject) => stream.end(data, () => resolve()).once("error", reject))
        : pipeline(toReadable(data), stream);
    const [sent, received] = await Promise.allSettled([upload, response]);
    // The agent's answer says more than a broken upload pipe (it may refuse early).
    if (received.status === "rejected") {
      throw toTetherError(sent.status === "rejected" ? sent.reason : received.reason, what, this.connection.address);
    }
    const { status, body } = received.value;
    if (status !== 200) throw httpError(status, body, what);
    if (sent.status === "rejected") throw toTetherError(sent.reason, what, this.connection.address);
    const entries = JSON.parse(body) as WriteInfo[];
    return entries[0] ?? { name: path.split("/").pop() ?? path, type: "file", path };
  }

  /**
   * Has the agent copy a file the host staged in the directory they share (the docker
   * backend's run/ mount) to `path`, with an upload's rules (atomic, parents made, a
   * replaced file keeps its bits unless `mode` is given). `size` is what the host
   * staged. TransferUnavailableError when the agent has no such directory or does not
   * see the file as staged: stream with `write` instead. Used by @tether/host's copies.
   */
  async importStaged(
    staged: string,
    path: string,
    options: FileOptions & { size: number; mode?: number },
  ): Promise<TransferredFile> {
    const params: Record<string, string> = { staged, size: String(options.size) };
    if (options.mode !== undefined) params.mode = options.mode.toString(8);
    return this.transfer("/files/import", path, params, options.user, `copy into ${path}`);
  }

  /**
   * Has the agent copy the file at `path` into the shared directory as `staged` (mode
   * 0600, owned by the host user); the host takes it from there and removes it.
   * TransferUnavailableError when the agent has no such directory.
   */
  async exportStaged(path: string, staged: string, options: FileOptions = {}): Promise<TransferredFile> {
    return this.transfer("/files/export", path, { staged }, options.user, `copy out ${path}`);
  }

  private async transfer(
    endpoint: string,
    path: string,
    params: Record<string, string>,
    user: string | undefined,
    what: string,
  ): Promise<TransferredFile> {
    const stream = await this.open("POST", path, user, what, {}, params, endpoint);
    try {
      stream.end();
      const headers = await responseOf(stream);
      const status = Number(headers[":status"]);
      const body = (await readAll(stream)).toString("utf8");
      if (status === 412 || (status === 404 && body.includes("no such endpoint"))) {
        throw new TransferUnavailableError(`${what}: ${messageOf(body) || `HTTP ${status}`}`);
      }
      if (status !== 200) throw httpError(status, body, what);
      return JSON.parse(body) as TransferredFile;
    } catch (err) {
      stream.destroy();
      throw toTetherError(err, what, this.connection.address);
    }
  }

  /** Lists a directory; `depth` > 1 descends into subdirectories. */
  async list(path: string, options: FileOptions & { depth?: number } = {}): Promise<EntryInfo[]> {
    try {
      const res = await this.client.listDir({ path, depth: options.depth ?? 1 }, this.callOptions(options));
      return res.entries.map(toEntryInfo);
    } catch (err) {
      throw toTetherError(err, `list ${path}`, this.connection.address);
    }
  }

  /** Facts about one path (symlinks are not followed). */
  async stat(path: string, options: FileOptions = {}): Promise<EntryInfo> {
    try {
      const res = await this.client.stat({ path }, this.callOptions(options));
      return toEntryInfo(required(res.entry, path));
    } catch (err) {
      throw toTetherError(err, `stat ${path}`, this.connection.address);
    }
  }

  /** True when the path exists. */
  async exists(path: string, options: FileOptions = {}): Promise<boolean> {
    try {
      await this.stat(path, options);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Creates a directory and its parents; false when it existed already. */
  async makeDir(path: string, options: FileOptions = {}): Promise<boolean> {
    try {
      await this.client.makeDir({ path }, this.callOptions(options));
      return true;
    } catch (err) {
      const mapped = toTetherError(err, `make directory ${path}`, this.connection.address);
      if (mapped instanceof AlreadyExistsError) return false;
      throw mapped;
    }
  }

  /** Removes a file or a directory tree. */
  async remove(path: string, options: FileOptions = {}): Promise<void> {
    try {
      await this.client.remove({ path }, this.callOptions(options));
    } catch (err) {
      throw toTetherError(err, `remove ${path}`, this.connection.address);
    }
  }

  /** Moves or renames a path; returns what is now at the destination. */
  async rename(source: string, destination: string, options: FileOptions = {}): Promise<EntryInfo> {
    try {
      const res = await this.client.move({ source, destination }, this.callOptions(options));
      return toEntryInfo(required(res.entry, destination));
    } catch (err) {
      throw toTetherError(err, `rename ${source} to ${destination}`, this.connection.address);
    }
  }

  private callOptions(options: FileOptions) {
    return { headers: this.connection.headers(options.user) };
  }

  /** Opens a /files stream; uploads go on the connection for bulk sent to the agent. */
  private async open(
    method: "GET" | "POST",
    path: string,
    user: string | undefined,
    what: string,
    extra: http2.OutgoingHttpHeaders,
    params: Record<string, string> = {},
    endpoint = "/files",
  ): Promise<http2.ClientHttp2Stream> {
    const query = new URLSearchParams({ path, ...params });
    try {
      return await this.connection.request(
        method,
        `${endpoint}?${query}`,
        { ...this.connection.headers(user), ...extra },
        // Only an upload carries a body of any size.
        { upstream: method === "POST" && endpoint === "/files" },
      );
    } catch (err) {
      throw toTetherError(err, what, this.connection.address);
    }
  }
}

function toReadable(data: Readable | AsyncIterable<Uint8Array> | WebReadableStream<Uint8Array>): Readable {
  if (data instanceof Readable) return data;
  if (isWebStream(data)) return Readable.fromWeb(data);
  return Readable.from(data, { objectMode: false });
}

function isWebStream(data: unknown): data is WebReadableStream<Uint8Array> {
  return typeof (data as WebReadableStream).getReader === "function";
}

function required(entry: WireEntryInfo | undefined, path: string): WireEntryInfo {
  if (!entry) throw new AgentProtocolError(`the agent returned no entry for ${path}`);
  return entry;
}

const KINDS: Record<number, FileKind> = {
  [FileType.FILE]: "file",
  [FileType.DIRECTORY]: "dir",
  [FileType.SYMLINK]: "symlink",
};

function toEntryInfo(e: WireEntryInfo): EntryInfo {
  return {
    name: e.name,
    type: KINDS[e.type] ?? "unknown",
    path: e.path,
    size: Number(e.size),
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    ...(e.modifiedTime ? { modifiedTime: timestampDate(e.modifiedTime) } : {}),
    ...(e.symlinkTarget !== undefined ? { symlinkTarget: e.symlinkTarget } : {}),
    metadata: { ...e.metadata },
  };
}
