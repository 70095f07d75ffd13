import { closeSync, constants, createReadStream, fstatSync, openSync, type Stats } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import path from "node:path";
import { PassThrough, type Readable, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import type { ConnectError } from "@connectrpc/connect";
import type busboy from "busboy";
import type { UnixUser } from "../auth/users.js";
import { type AgentContext, requestUser } from "../context.js";
import { type HttpRequest, type HttpResponse, sendError, sendJson } from "../http/respond.js";
import { httpStatusOf } from "../rpc/errors.js";
import { fsError, invalidPath, plainMessage } from "./errors.js";
import { metadataFromHeaders } from "./metadata.js";
import { type FileRights, rightsFor } from "./ownership.js";
import { resolveUserPath } from "./paths.js";
import { filesRuntime } from "./runtime.js";
import { type StagedFile, stageFile } from "./upload.js";

/** What `POST /files` answers for each written file (envd's shape). */
interface WrittenFile {
  name: string;
  type: "file";
  path: string;
  /** The metadata stored with the file, when any was sent and the filesystem took it. */
  metadata?: Record<string, string>;
}

/** A request error with the HTTP status to answer it with. */
class FilesHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "FilesHttpError";
  }
}

/**
 * `GET /files?path=&username=`: streams the file, gzip-compressed when the client
 * accepts it. 404 when missing, 400 for a directory.
 */
export async function handleFilesDownload(
  ctx: AgentContext,
  req: HttpRequest,
  res: HttpResponse,
  url: URL,
): Promise<void> {
  try {
    const user = requestUser(ctx, req.headers, url.searchParams.get("username"));
    const target = resolveUserPath(user, url.searchParams.get("path") ?? "");
    // Opened with the user's rights (a link the user planted leads only where the user may
    // read), before answering, so EACCES is a clean 403 instead of a cut stream. Nonblocking:
    // opening a FIFO must not wait for a writer on the agent's only thread.
    const rights = await rightsFor(ctx, user);
    let fd: number;
    try {
      fd = rights.run(() => openSync(target, constants.O_RDONLY | constants.O_NONBLOCK));
    } catch (err) {
      throw fsError(err, "read", target);
    }
    let info: Stats;
    try {
      info = fstatSync(fd);
      if (info.isDirectory()) throw invalidPath(target, "path is a directory, not a file");
      if (info.isFIFO() || info.isSocket()) throw invalidPath(target, "path is not a file that can be read");
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    // 1 MiB reads: the 64 KiB default costs a syscall and an HTTP/2 frame batch per 64 KiB.
    const file = createReadStream(target, { fd, highWaterMark: 1 << 20 });
    const gzip = acceptsGzip(req.headers["accept-encoding"]);
    const headers: Record<string, string | number> = {
      "content-type": "application/octet-stream",
      "content-disposition": contentDisposition(path.basename(target)),
      "last-modified": info.mtime.toUTCString(),
      vary: "Accept-Encoding",
    };
    // No Content-Length: a file rewritten while it is read (a log, a counter) may end up shorter
    // or longer than its stat said, and HTTP/2 resets a response whose body does not match it.
    // The client gets what was read, as `cat` would.
    if (gzip) headers["content-encoding"] = "gzip";
    res.writeHead(200, headers);
    try {
      if (gzip) await pipeline(file, createGzip(), res);
      else await pipeline(file, res);
    } catch (err) {
      // Headers are gone: all we can do is cut the response so the client sees it short.
      ctx.log.debug({ err, path: target }, "download interrupted");
      res.destroy();
    }
  } catch (err) {
    answerError(ctx, res, err);
  }
}

/**
 * `POST /files?path=&username=`: `multipart/form-data` (parts named `file`; the part's
 * filename is its path unless `path` is given) or `application/octet-stream` (needs
 * `path`). Either may be gzip-encoded. Every file is staged next to its target and only
 * renamed into place once the whole body arrived, so a failed or cut upload changes
 * nothing.
 */
export async function handleFilesUpload(
  ctx: AgentContext,
  req: HttpRequest,
  res: HttpResponse,
  url: URL,
): Promise<void> {
  const staged: StagedFile[] = [];
  let body: Readable | undefined;
  try {
    const user = requestUser(ctx, req.headers, url.searchParams.get("username"));
    const rights = await rightsFor(ctx, user);
    const metadata = metadataFromHeaders(req.headers as IncomingHttpHeaders);
    const queryPath = url.searchParams.get("path");
    const mode = modeParam(url.searchParams.get("mode"));
    body = requestBody(req);
    const mediaType = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();

    if (mediaType === "application/octet-stream") {
      if (!queryPath) throw new FilesHttpError(400, "the path query parameter is required for an octet-stream upload");
      const target = resolveUserPath(user, queryPath);
      staged.push(await stageFile(body, target, { rights, metadata, mode }));
    } else if (mediaType.startsWith("multipart/")) {
      staged.push(
        ...(await stageMultipart(req.headers as IncomingHttpHeaders, body, user, rights, queryPath, metadata, mode)),
      );
      if (staged.length === 0) throw new FilesHttpError(400, 'the form has no file part named "file"');
    } else {
      throw new FilesHttpError(
        400,
        `unsupported content type "${mediaType || "(none)"}": expected multipart/form-data or application/octet-stream`,
      );
    }

    const { uploads } = filesRuntime(ctx);
    const written: WrittenFile[] = [];
    for (const file of staged) {
      await file.commit(uploads);
      const info: WrittenFile = { name: path.basename(file.target), type: "file", path: file.target };
      if (!file.metadataStored) ctx.log.warn({ path: file.target }, "filesystem refused xattrs; metadata not stored");
      else if (Object.keys(metadata).length > 0) info.metadata = metadata;
      written.push(info);
    }
    sendJson(res, 200, written);
  } catch (err) {
    // Drains whatever of the body is left, so the connection can carry the answer.
    body?.destroy();
    await Promise.all(staged.map((file) => file.discard()));
    answerError(ctx, res, err);
  }
}

/** The optional `mode` query parameter of an upload: octal permission bits, e.g. 755. */
function modeParam(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (!/^[0-7]{1,4}$/.test(value))
    throw new FilesHttpError(400, `mode "${value}" is not octal permission bits (e.g. 644)`);
  return Number.parseInt(value, 8);
}

/**
 * Streams each `file` part of a form into its own staged file, one after another as
 * they arrive. Any failure stops the parser and discards what was staged.
 */
async function stageMultipart(
  headers: IncomingHttpHeaders,
  body: Readable,
  user: UnixUser,
  rights: FileRights,
  queryPath: string | null,
  metadata: Record<string, string>,
  mode: number | undefined,
): Promise<StagedFile[]> {
  // Loaded on the first upload, not at every agent start.
  const { default: parse } = await import("busboy");
  let parser: busboy.Busboy;
  try {
    // preservePath: the SDK puts the whole destination path in the part's filename.
    parser = parse({ headers, preservePath: true });
  } catch (err) {
    throw new FilesHttpError(400, `malformed multipart request: ${plainMessage(err)}`);
  }
  const abort = new AbortController();
  // Indexed by part, so the answer lists files in the order the form sent them.
  const staged: StagedFile[] = [];
  const pending: Promise<void>[] = [];
  const targets = new Set<string>();
  let failure: unknown;
  const fail = (err: unknown) => {
    failure ??= err;
    abort.abort(err);
  };

  parser.on("file", (field, stream, info) => {
    // When the parser is torn down it errors the current part; whoever reads the part
    // hears that through its pipeline, an ignored part must not crash the agent.
    stream.on("error", () => {});
    if (field !== "file" || failure !== undefined) {
      stream.resume();
      return;
    }
    let target: string;
    try {
      const raw = queryPath || info.filename;
      if (!raw) throw new FilesHttpError(400, "a file part has no filename and no path query parameter was given");
      target = resolveUserPath(user, raw);
      if (targets.has(target)) {
        throw new FilesHttpError(400, `several parts of one upload write to the same path: ${target}`);
      }
    } catch (err) {
      stream.resume();
      fail(err);
      return;
    }
    targets.add(target);
    const index = pending.length;
    pending.push(
      stageFile(stream, target, { rights, metadata, mode }).then(
        (file) => {
          staged[index] = file;
        },
        (err: unknown) => fail(err),
      ),
    );
  });

  try {
    await pipeline(body, parser, { signal: abort.signal });
  } catch (err) {
    fail(err);
  }
  await Promise.all(pending);
  const files = staged.filter((file) => file !== undefined);
  if (failure !== undefined) {
    await Promise.all(files.map((file) => file.discard()));
    throw failure;
  }
  return files;
}

/**
 * The request body as a stream the upload may destroy on failure without killing the
 * connection: the rest of the body is then drained, so the client still gets the error
 * answer. Gunzipped when it says `Content-Encoding: gzip`. A client that goes away
 * mid-body errors the stream.
 */
function requestBody(req: HttpRequest): Readable {
  const encoding = (req.headers["content-encoding"] ?? "").toString().trim().toLowerCase();
  if (encoding !== "" && encoding !== "identity" && encoding !== "gzip") {
    throw new FilesHttpError(400, `unsupported content encoding "${encoding}": expected gzip`);
  }
  const source = req as Readable;
  const body: Transform = encoding === "gzip" ? createGunzip() : new PassThrough();
  source.pipe(body);
  // Consumers see errors through their own pipeline; this keeps pipe()'s re-emit from
  // turning an error they already handled into an uncaught one.
  body.on("error", () => {});
  source.once("error", (err) => body.destroy(err));
  source.once("close", () => {
    if (!source.readableEnded) body.destroy(new Error("the client closed the connection before the body was complete"));
  });
  body.once("close", () => {
    if (source.readableEnded) return;
    source.unpipe(body);
    source.resume();
  });
  return body;
}

function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(",") : (header ?? "");
  return value.split(",").some((part) => {
    const [token, ...params] = part.trim().toLowerCase().split(";");
    if (token.trim() !== "gzip") return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/** `attachment; filename="x"` with an RFC 5987 form for names that are not plain ASCII. */
function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

function answerError(ctx: AgentContext, res: HttpResponse, err: unknown): void {
  if (isZlibError(err) || isZlibError((err as ConnectError).cause)) {
    sendError(res, 400, `the request body is not valid gzip: ${plainMessage(err)}`);
    return;
  }
  const status = err instanceof FilesHttpError ? err.status : httpStatusOf(err);
  if (status >= 500) ctx.log.error({ err }, "file request failed");
  sendError(res, status, plainMessage(err));
}

function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && code.startsWith("Z_");
}
