import { randomUUID } from "node:crypto";
import { lstat, readdir, realpath, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { KEEPALIVE_INTERVAL_HEADER } from "@tether/protocol/constants";
import {
  type EntryInfo,
  Filesystem,
  type FilesystemEvent,
  type WatchDirResponse,
  WatchDirResponseSchema,
} from "@tether/protocol/filesystem";
import type { UserDirectory } from "../auth/users.js";
import { type AgentContext, requestUser } from "../context.js";
import { throwIfDeadlinePassed } from "../server/deadline.js";
import type { AgentService } from "../server/service.js";
import { entryInfo } from "./entry.js";
import { fsError, invalidPath } from "./errors.js";
import { ensureDirs, ownerFor } from "./ownership.js";
import { resolveUserPath } from "./paths.js";
import { AsyncQueue } from "./queue.js";
import { filesRuntime } from "./runtime.js";
import { DirWatcher } from "./watch.js";

/** A watcher made by CreateWatcher, polled with GetWatcherEvents. */
interface PolledWatcher {
  watcher: DirWatcher;
  events: AsyncQueue<FilesystemEvent>;
  /** Set when the watch broke; reported by the next poll. */
  failure?: ConnectError;
}

/** envd's `filesystem.Filesystem` service: stat, list, create, move, remove and watch. */
export function createFilesystemService(ctx: AgentContext): AgentService {
  const runtime = filesRuntime(ctx);
  const polled = new Map<string, PolledWatcher>();
  const streams = new Set<AsyncQueue<WatchDirResponse>>();

  const userPath = (hctx: HandlerContext, raw: string, what?: string) =>
    resolveUserPath(requestUser(ctx, hctx.requestHeader), raw, what);

  const polledWatcher = (id: string): PolledWatcher => {
    const found = polled.get(id);
    if (!found) throw new ConnectError(`no watcher with id "${id}"`, Code.NotFound);
    return found;
  };

  return {
    register(router) {
      router.service(Filesystem, {
        async stat(req, hctx) {
          return { entry: await entryInfo(userPath(hctx, req.path), runtime.names) };
        },

        async makeDir(req, hctx) {
          const user = requestUser(ctx, hctx.requestHeader);
          const dir = resolveUserPath(user, req.path);
          const existing = await stat(dir).catch(() => undefined);
          if (existing?.isDirectory()) throw new ConnectError(`directory already exists: ${dir}`, Code.AlreadyExists);
          if (existing) throw invalidPath(dir, "path already exists but is not a directory");
          await ensureDirs(dir, ownerFor(ctx, user));
          return { entry: await entryInfo(dir, runtime.names) };
        },

        async move(req, hctx) {
          const user = requestUser(ctx, hctx.requestHeader);
          const source = resolveUserPath(user, req.source, "source");
          const destination = resolveUserPath(user, req.destination, "destination");
          await lstat(source).catch((err: unknown) => {
            throw fsError(err, "move: source", source);
          });
          await ensureDirs(path.dirname(destination), ownerFor(ctx, user));
          try {
            await rename(source, destination);
          } catch (err) {
            throw fsError(err, `move ${source} to`, destination);
          }
          return { entry: await entryInfo(destination, runtime.names) };
        },

        async listDir(req, hctx) {
          const dir = userPath(hctx, req.path);
          // A symlink to a directory is listed as that directory, under the path asked for.
          let resolved: string;
          try {
            resolved = await realpath(dir);
          } catch (err) {
            throw fsError(err, "list", dir);
          }
          const st = await stat(resolved).catch((err: unknown) => {
            throw fsError(err, "list", dir);
          });
          if (!st.isDirectory()) throw invalidPath(dir, "path is not a directory");
          const entries: EntryInfo[] = [];
          await walk(resolved, dir, req.depth || 1, runtime.names, entries);
          return { entries };
        },

        // envd removes with Go's os.RemoveAll: a path that does not exist is no error.
        async remove(req, hctx) {
          const target = userPath(hctx, req.path);
          try {
            await rm(target, { recursive: true, force: true });
          } catch (err) {
            throw fsError(err, "remove", target);
          }
          return {};
        },

        async *watchDir(req, hctx) {
          const root = userPath(hctx, req.path);
          const queue = new AsyncQueue<WatchDirResponse>();
          const watcher = await DirWatcher.start({
            root,
            recursive: req.recursive,
            includeEntry: req.includeEntry,
            runtime,
            onEvent: (event) =>
              queue.push(create(WatchDirResponseSchema, { event: { case: "filesystem", value: event } })),
            onError: (err) => queue.end(err),
          });
          streams.add(queue);
          const stop = () => queue.end();
          hctx.signal.addEventListener("abort", stop);
          const keepalive = keepaliveTimer(hctx, () =>
            queue.push(create(WatchDirResponseSchema, { event: { case: "keepalive", value: {} } })),
          );
          try {
            yield create(WatchDirResponseSchema, { event: { case: "start", value: {} } });
            for await (const message of queue) {
              keepalive.sent();
              yield message;
            }
            throwIfDeadlinePassed(hctx);
          } finally {
            keepalive.stop();
            hctx.signal.removeEventListener("abort", stop);
            streams.delete(queue);
            watcher.close();
          }
        },

        async createWatcher(req, hctx) {
          const root = userPath(hctx, req.path);
          const events = new AsyncQueue<FilesystemEvent>();
          const entry: Partial<PolledWatcher> = { events };
          entry.watcher = await DirWatcher.start({
            root,
            recursive: req.recursive,
            includeEntry: req.includeEntry,
            runtime,
            onEvent: (event) => events.push(event),
            onError: (err) => {
              entry.failure = err;
            },
          });
          const watcherId = randomUUID();
          polled.set(watcherId, entry as PolledWatcher);
          return { watcherId };
        },

        async getWatcherEvents(req) {
          const found = polledWatcher(req.watcherId);
          const events = found.events.drain();
          if (events.length === 0 && found.failure) {
            polled.delete(req.watcherId);
            throw found.failure;
          }
          return { events };
        },

        async removeWatcher(req) {
          polledWatcher(req.watcherId).watcher.close();
          polled.delete(req.watcherId);
          return {};
        },
      });
    },

    async close() {
      for (const { watcher } of polled.values()) watcher.close();
      polled.clear();
      for (const queue of streams) queue.end();
    },
  };
}

/**
 * Depth-first listing in name order, like envd's WalkDir: `depth` 1 is the directory's
 * own entries. Symlinked directories are listed, not descended into.
 */
async function walk(
  dir: string,
  shownAs: string,
  depth: number,
  names: UserDirectory,
  out: EntryInfo[],
): Promise<void> {
  let children: string[];
  try {
    children = (await readdir(dir)).sort();
  } catch (err) {
    throw fsError(err, "list", shownAs);
  }
  for (const name of children) {
    const entry = await entryInfo(path.join(dir, name), names).catch(() => undefined);
    if (!entry) continue; // Removed while we listed.
    entry.path = path.join(shownAs, name);
    out.push(entry);
    const st = await lstat(path.join(dir, name)).catch(() => undefined);
    if (depth > 1 && st?.isDirectory()) {
      await walk(path.join(dir, name), path.join(shownAs, name), depth - 1, names, out);
    }
  }
}

/**
 * Sends `send` after every quiet `Keepalive-Ping-Interval` seconds, if the client asked
 * for keepalives; `sent` restarts the count whenever anything went out.
 */
function keepaliveTimer(hctx: HandlerContext, send: () => void): { sent(): void; stop(): void } {
  const seconds = Number(hctx.requestHeader.get(KEEPALIVE_INTERVAL_HEADER));
  if (!Number.isFinite(seconds) || seconds <= 0) return { sent() {}, stop() {} };
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(send, seconds * 1000);
  };
  schedule();
  return { sent: schedule, stop: () => clearTimeout(timer) };
}
