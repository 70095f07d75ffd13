import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { copyFile, type FileHandle, open, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { AgentContext } from "../context.js";
import { requestUser } from "../context.js";
import { type HttpRequest, type HttpResponse, sendError, sendJson } from "../http/respond.js";
import { fsError, invalidPath } from "./errors.js";
import { rightsFor } from "./ownership.js";
import { resolveUserPath } from "./paths.js";
import { filesRuntime } from "./runtime.js";
import { stageWith } from "./upload.js";

/**
 * A directory the host shares with the sandbox (the docker backend's run/ mount), through
 * which `tether cp` hands files over without streaming them: the host stages a file
 * there and the agent copies it into place in the kernel (copy_file_range), or the other
 * way round.
 */
export interface TransferDir {
  /** The directory as the agent sees it. */
  dir: string;
  /** A read-only one the host stages incoming files in, when it has one (else `dir`). */
  importDir?: string;
  /** Who files staged for the host belong to (the socket's owner: the host user). */
  owner?: { uid: number; gid: number };
}

/** Names the host gives staged files: nothing else in the directory is ever touched. */
const STAGED_NAME = /^tether-xfer-[0-9a-f]{32}$/;

/** Answered when the host should stream instead: no shared directory, or it does not see the host's file. */
const UNAVAILABLE = 412;

/** What the transfer endpoints answer: the file as copied. */
interface TransferredFile {
  path: string;
  size: number;
  mode: number;
}

/**
 * What both endpoints start from: the shared directory (answering 412 and returning
 * undefined when there is none), the request's user, the staged name and the user's path.
 */
function transferCall(ctx: AgentContext, req: HttpRequest, res: HttpResponse, url: URL) {
  const transfer = ctx.transfer;
  if (!transfer) {
    sendError(res, UNAVAILABLE, "this agent has no directory shared with the host");
    return undefined;
  }
  const user = requestUser(ctx, req.headers, url.searchParams.get("username"));
  const name = stagedName(url);
  const target = resolveUserPath(user, url.searchParams.get("path") ?? "");
  return { transfer, user, name, target };
}

/**
 * `POST /files/import?staged=NAME&path=&username=&mode=&size=`: copies the host's staged
 * file into `path` with an upload's rules (temp file beside the target, renamed into
 * place; parents made and owned by the user; a replaced file keeps its bits; writes
 * through a symlink at the target). 412 when there is no shared directory or the staged
 * file is not there with `size` bytes (the host then streams).
 */
export async function handleFilesImport(
  ctx: AgentContext,
  req: HttpRequest,
  res: HttpResponse,
  url: URL,
): Promise<void> {
  const call = transferCall(ctx, req, res, url);
  if (!call) return;
  const { transfer, user, name, target } = call;
  const rights = await rightsFor(ctx, user);
  const size = Number(url.searchParams.get("size") ?? Number.NaN);
  if (!Number.isSafeInteger(size) || size < 0) throw invalidPath(String(size), "size is not a byte count");
  const mode = modeParam(url.searchParams.get("mode"));

  // The directory is writable from inside the sandbox: never follow a link put there, and
  // copy from the descriptor we checked, not from the name.
  let source: FileHandle;
  try {
    source = await open(
      path.join(transfer.importDir ?? transfer.dir, name),
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
  } catch (err) {
    return sendError(res, UNAVAILABLE, `staged file ${name} cannot be opened: ${(err as Error).message}`);
  }
  try {
    const info = await source.stat();
    if (!info.isFile()) return sendError(res, UNAVAILABLE, `staged file ${name} is not a regular file`);
    if (info.size !== size) {
      return sendError(res, UNAVAILABLE, `staged file ${name} has ${info.size} bytes, not ${size}`);
    }
    const staged = await stageWith(
      target,
      { rights, mode },
      // Into the temp file the user's rights created, through its descriptor.
      (_temp, fd) => copyFile(`/proc/self/fd/${source.fd}`, `/proc/self/fd/${fd}`),
      0o666 & ~process.umask(),
    );
    await staged.commit(filesRuntime(ctx).uploads);
    const written = await stat(staged.destination);
    sendJson(res, 200, { path: target, size: written.size, mode: written.mode & 0o7777 } satisfies TransferredFile);
  } finally {
    await source.close();
  }
}

/**
 * `POST /files/export?staged=NAME&path=&username=`: copies the file at `path` (resolved
 * as `GET /files` does) into the shared directory under NAME, owned by the host user,
 * mode 0600, and answers its size and permission bits. The host takes it from there
 * and removes it. 412 when there is no shared directory.
 */
export async function handleFilesExport(
  ctx: AgentContext,
  req: HttpRequest,
  res: HttpResponse,
  url: URL,
): Promise<void> {
  const call = transferCall(ctx, req, res, url);
  if (!call) return;
  const { transfer, user, name, target } = call;
  const rights = await rightsFor(ctx, user);
  const staged = path.join(transfer.dir, name);
  let source: number;
  try {
    // With the user's rights, as GET /files reads: a planted link leads only where the user may read.
    source = rights.run(() => openSync(target, constants.O_RDONLY | constants.O_NONBLOCK));
  } catch (err) {
    throw fsError(err, "read", target);
  }
  try {
    const opened = fstatSync(source);
    if (opened.isDirectory()) throw invalidPath(target, "path is a directory, not a file");
    if (!opened.isFile()) throw invalidPath(target, "path is not a regular file");
    // EXCL: a name planted in the shared directory (a link, anything) fails the copy.
    await copyFile(`/proc/self/fd/${source}`, staged, constants.COPYFILE_EXCL);
    try {
      // Through a descriptor, never by name: whoever can write the directory could have
      // swapped the name for a link to a file we must not chmod or chown.
      const handle = await open(staged, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        if (!(await handle.stat()).isFile()) throw invalidPath(staged, "the staged file was replaced");
        await handle.chmod(0o600);
        if (transfer.owner) await handle.chown(transfer.owner.uid, transfer.owner.gid);
        const copied = await handle.stat();
        sendJson(res, 200, { path: target, size: copied.size, mode: opened.mode & 0o7777 } satisfies TransferredFile);
      } finally {
        await handle.close();
      }
    } catch (err) {
      await rm(staged, { force: true });
      throw err;
    }
  } catch (err) {
    throw fsError(err, "copy", target);
  } finally {
    closeSync(source);
  }
}

function stagedName(url: URL): string {
  const name = url.searchParams.get("staged") ?? "";
  if (!STAGED_NAME.test(name)) throw invalidPath(name, "staged is not a name the host hands out (tether-xfer-<hex>)");
  return name;
}

function modeParam(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (!/^[0-7]{1,4}$/.test(value)) throw invalidPath(value, "mode is not octal permission bits (e.g. 644)");
  return Number.parseInt(value, 8);
}
