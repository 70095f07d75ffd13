import { randomUUID } from "node:crypto";
import { lstatSync, opendirSync, realpathSync, renameSync, rmSync, type Stats, statSync } from "node:fs";
import { lstat, readdir, rm } from "node:fs/promises";
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
import { type AgentLimits, DEFAULT_LIMITS } from "../limits.js";
import { throwIfDeadlinePassed } from "../rpc/deadline.js";
import type { AgentService } from "../rpc/service.js";
import { entryInfo } from "./entry.js";
import { fsError, invalidPath } from "./errors.js";
import { ensureDirs, type FileRights, rightsFor } from "./ownership.js";
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
  /** When it was made or last polled: a watcher nobody polls is removed (see sweepPolled). */
  polledAt: number;
}

/** envd's `filesystem.Filesystem` service: stat, list, create, move, remove and watch. */
export function createFilesystemService(
  ctx: AgentContext,
  limits: Pick<AgentLimits, "watcherIdleMs" | "maxPolledWatchers"> = DEFAULT_LIMITS,
): AgentService {
  const runtime = filesRuntime(ctx);
  const polled = new Map<string, PolledWatcher>();
  // A client that made watchers and went away would leave them (and all they queue) for good.
  let sweeper: NodeJS.Timeout | undefined;
  /** Watchers being started, counted against the cap with those made. */
  let starting = 0;
  const sweepPolled = () => {
    const now = Date.now();
    for (const [id, entry] of polled) {
      if (now - entry.polledAt <= limits.watcherIdleMs) continue;
      entry.watcher.close();
      polled.delete(id);
      ctx.log.info({ watcherId: id }, "removed a watcher nobody polled");
    }
    if (polled.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };
  const streams = new Set<AsyncQueue<WatchDirResponse>>();

  /** The request's user and the rights its file calls run with. */
  const requestRights = async (hctx: HandlerContext) => {
    const user = requestUser(ctx, hctx.requestHeader);
    return { user, rights: await rightsFor(ctx, user) };
  };

  const polledWatcher = (id: string): PolledWatcher => {
    const found = polled.get(id);
    if (!found) throw new ConnectError(`no watcher with id "${id}"`, Code.NotFound);
    return found;
  };

  return {
    register(router) {
      router.service(Filesystem, {
        async stat(req, hctx) {
          const { user, rights } = await requestRights(hctx);
          const target = resolveUserPath(user, req.path);
          // Only what the user can reach; the entry's details are then read as the agent.
          reachable(rights, target, "stat");
          return { entry: await entryInfo(target, runtime.names) };
        },

        async makeDir(req, hctx) {
          const { user, rights } = await requestRights(hctx);
          const dir = resolveUserPath(user, req.path);
          let existing: Stats | undefined;
          try {
            existing = rights.run(() => statSync(dir, { throwIfNoEntry: false }));
          } catch (err) {
            throw fsError(err, "create directory", dir);
          }
          if (existing?.isDirectory()) throw new ConnectError(`directory already exists: ${dir}`, Code.AlreadyExists);
          if (existing) throw invalidPath(dir, "path already exists but is not a directory");
          ensureDirs(dir, rights);
          return { entry: await entryInfo(dir, runtime.names) };
        },

        async move(req, hctx) {
          const { user, rights } = await requestRights(hctx);
          const source = resolveUserPath(user, req.source, "source");
          const destination = resolveUserPath(user, req.destination, "destination");
          reachable(rights, source, "move: source");
          ensureDirs(path.dirname(destination), rights);
          try {
            rights.run(() => renameSync(source, destination));
          } catch (err) {
            throw fsError(err, `move ${source} to`, destination);
          }
          return { entry: await entryInfo(destination, runtime.names) };
        },

        async listDir(req, hctx) {
          const { user, rights } = await requestRights(hctx);
          const dir = resolveUserPath(user, req.path);
          // A symlink to a directory is listed as that directory, under the path asked for.
          let resolved: string;
          let isDirectory: boolean;
          try {
            [resolved, isDirectory] = rights.run(() => {
              const real = realpathSync(dir);
              if (!statSync(real).isDirectory()) return [real, false] as const;
              // The user must be able to list it; the entries are then read as the agent.
              opendirSync(real).closeSync();
              return [real, true] as const;
            });
          } catch (err) {
            throw fsError(err, "list", dir);
          }
          if (!isDirectory) throw invalidPath(dir, "path is not a directory");
          const entries: EntryInfo[] = [];
          await walk(resolved, dir, req.depth || 1, runtime.names, entries);
          return { entries };
        },

        // envd removes with Go's os.RemoveAll: a path that does not exist is no error.
        async remove(req, hctx) {
          const { user, rights } = await requestRights(hctx);
          const target = resolveUserPath(user, req.path);
          try {
            if (rights.switches) {
              // Synchronous, so every call has the user's rights: a large tree holds the loop meanwhile.
              rights.run(() => rmSync(target, { recursive: true, force: true }));
            } else {
              await rm(target, { recursive: true, force: true });
            }
          } catch (err) {
            throw fsError(err, "remove", target);
          }
          return {};
        },

        async *watchDir(req, hctx) {
          const { user, rights } = await requestRights(hctx);
          const root = resolveUserPath(user, req.path);
          reachable(rights, root, "watch", true);
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
          const { user, rights } = await requestRights(hctx);
          const root = resolveUserPath(user, req.path);
          reachable(rights, root, "watch", true);
          if (polled.size + starting >= limits.maxPolledWatchers) {
            throw new ConnectError(
              `too many watchers (${limits.maxPolledWatchers}): remove one with RemoveWatcher first`,
              Code.ResourceExhausted,
            );
          }
          const events = new AsyncQueue<FilesystemEvent>();
          const entry: Partial<PolledWatcher> = { events, polledAt: Date.now() };
          starting++;
          try {
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
          } finally {
            starting--;
          }
          const watcherId = randomUUID();
          polled.set(watcherId, entry as PolledWatcher);
          sweeper ??= setInterval(sweepPolled, Math.min(60_000, limits.watcherIdleMs / 2)).unref();
          return { watcherId };
        },

        async getWatcherEvents(req) {
          const found = polledWatcher(req.watcherId);
          found.polledAt = Date.now();
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
      clearInterval(sweeper);
      for (const { watcher } of polled.values()) watcher.close();
      polled.clear();
      for (const queue of streams) queue.end();
    },
  };
}

/**
 * Fails like the user's own lstat (or stat, following a link at the end) would: a path
 * the user cannot reach is not theirs to act on.
 */
function reachable(rights: FileRights, target: string, what: string, follow = false): void {
  try {
    rights.run(() => (follow ? statSync(target) : lstatSync(target)));
  } catch (err) {
    throw fsError(err, what, target);
  }
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
