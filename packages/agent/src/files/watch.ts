import { type BigIntStats, type FSWatcher, watch } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { EventType, type FilesystemEvent, FilesystemEventSchema } from "@tether/protocol/filesystem";
import { entryInfo } from "./entry.js";
import { fsError, invalidPath } from "./errors.js";
import type { FilesRuntime, UploadListener } from "./runtime.js";
import { isUploadTempName } from "./upload.js";

export interface DirWatcherOptions {
  /** Absolute path of the directory to watch. */
  root: string;
  recursive: boolean;
  /** Attach the EntryInfo of the path to events about something that exists. */
  includeEntry: boolean;
  runtime: FilesRuntime;
  onEvent(event: FilesystemEvent): void;
  /** The watch broke (root removed, inotify limit, ...); no events follow. */
  onError(err: ConnectError): void;
}

/** What the watcher last saw of a path, to tell a write from a chmod from a rename. */
interface Seen {
  dev: bigint;
  ino: bigint;
  dir: boolean;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  mode: bigint;
  uid: bigint;
  gid: bigint;
  /** Created since the last look: the first change event after it is the write. */
  fresh: boolean;
}

/** One place in the output order; a vanished path holds its place until we know whether it was renamed. */
interface Slot {
  event?: FilesystemEvent;
  ready: boolean;
}

/**
 * Watches a directory (and, if recursive, everything under it) with one inotify watch
 * per directory through `fs.watch`, and reports envd's event types. Node only says
 * "rename" or "change"; the watcher keeps what it last saw of each path (inode, size,
 * mtime, mode) and derives from it:
 * - CREATE for a path that appeared; a new directory is watched at once and whatever
 *   was already created inside it is reported too;
 * - WRITE when size or mtime changed, CHMOD when only mode, owner or ctime did;
 * - RENAME for a path whose inode then appears under another name (kernel rename
 *   events come in pairs, so this is settled once the pending events are handled),
 *   else REMOVE.
 * An upload's temp file is never reported, nor the rename that puts it in place: the
 * upload reports itself (`uploaded`) as envd's in-place write, before it answers.
 */
export class DirWatcher implements UploadListener {
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly seen = new Map<string, Seen>();
  private readonly slots: Slot[] = [];
  /** Vanished paths by `dev:ino`, waiting to become RENAME or REMOVE. */
  private readonly vanished = new Map<string, { path: string; slot: Slot }>();
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private closed = false;
  private rootIno = 0n;

  private constructor(private readonly options: DirWatcherOptions) {}

  /** Starts watching; resolves once the watch is in place, so later changes are seen. */
  static async start(options: DirWatcherOptions): Promise<DirWatcher> {
    const { root } = options;
    let st: BigIntStats;
    try {
      st = await stat(root, { bigint: true });
    } catch (err) {
      throw fsError(err, "watch", root);
    }
    if (!st.isDirectory()) throw invalidPath(root, "cannot watch a path that is not a directory");
    const watcher = new DirWatcher(options);
    watcher.rootIno = st.ino;
    try {
      await watcher.addDir(root, false);
    } catch (err) {
      watcher.close();
      throw fsError(err, "watch", root);
    }
    options.runtime.uploads.listen(watcher);
    return watcher;
  }

  /**
   * An upload renamed a file into a watched directory: reports what inotify gives for
   * envd's in-place write (CREATE for a new file, then CHMOD and WRITE), delivered before
   * this resolves, so a client polling right after its upload answered sees them. Queued
   * behind the raw events already read, to keep the kernel's order.
   */
  async uploaded(target: string, ino: bigint, created: boolean): Promise<void> {
    if (this.closed || !this.watchers.has(path.dirname(target))) return;
    const reported = this.chain.then(async () => {
      if (this.closed) return;
      const st = await lstat(target, { bigint: true }).catch(() => undefined);
      // Replaced or removed since: the raw events of that tell the story.
      if (st?.ino !== ino) return;
      const before = this.seen.get(target);
      if (before && (before.ino !== st.ino || before.dev !== st.dev)) this.forget(target, before);
      this.seen.set(target, seenOf(st, false));
      if (created) await this.emit(EventType.CREATE, target);
      await this.emit(EventType.CHMOD, target);
      await this.emit(EventType.WRITE, target);
      // Events held behind a vanished path go out now, not at the next settle.
      if (this.queued === 0) this.settle();
    });
    this.chain = reported.catch((err: unknown) => this.fail(fsError(err, "watch", target)));
    await this.chain;
  }

  close(): void {
    this.options.runtime.uploads.unlisten(this);
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.seen.clear();
    this.vanished.clear();
  }

  /** Watches `dir`, records its entries and, for a new directory, reports them. */
  private async addDir(dir: string, announce: boolean): Promise<void> {
    if (this.closed || this.watchers.has(dir)) return;
    const watcher = watch(dir, { persistent: false }, (type, name) => this.enqueue(dir, type, name));
    watcher.on("error", (err) => {
      watcher.close();
      this.watchers.delete(dir);
      if (dir === this.options.root) this.fail(fsError(err, "watch", dir));
    });
    this.watchers.set(dir, watcher);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (dir === this.options.root) throw err;
      return; // Gone or unreadable already: its parent reports what happened.
    }
    for (const name of names.sort()) {
      if (this.closed) return;
      if (isUploadTempName(name)) continue;
      const child = path.join(dir, name);
      const st = await lstat(child, { bigint: true }).catch(() => undefined);
      if (!st || this.seen.has(child)) continue;
      this.seen.set(child, seenOf(st, announce));
      if (announce) await this.emit(EventType.CREATE, child);
      if (st.isDirectory() && this.options.recursive) await this.addDir(child, announce);
    }
  }

  /** Handles raw events one at a time, in the order the kernel gave them. */
  private enqueue(dir: string, type: string, name: string | null): void {
    if (this.closed) return;
    this.queued++;
    this.chain = this.chain.then(async () => {
      try {
        await this.handle(dir, type, name);
      } catch (err) {
        this.fail(fsError(err, "watch", dir));
      } finally {
        if (--this.queued === 0) setImmediate(() => this.settle());
      }
    });
  }

  private async handle(dir: string, type: string, name: string | null): Promise<void> {
    if (this.closed || !name || !this.watchers.has(dir)) return;
    if (dir === this.options.root && type === "rename" && name === path.basename(dir)) await this.checkRoot();
    if (isUploadTempName(name)) return;
    const target = path.join(dir, name);
    const st = await lstat(target, { bigint: true }).catch(() => undefined);
    const before = this.seen.get(target);
    if (st && (!before || before.ino !== st.ino || before.dev !== st.dev)) await this.appeared(target, st, before);
    else if (st && before) await this.changed(target, st, before);
    else if (!st && before) this.vanish(target, before);
  }

  private async appeared(target: string, st: BigIntStats, before: Seen | undefined): Promise<void> {
    if (before) this.forget(target, before);
    const from = this.vanished.get(inodeKey(st));
    if (from) {
      this.vanished.delete(inodeKey(st));
      this.resolve(from.slot, EventType.RENAME, from.path);
    }
    // An upload's rename: `uploaded` reports it (or did already).
    if (!from && st.isFile() && this.options.runtime.uploads.isUpload(target, st.ino)) {
      this.seen.set(target, seenOf(st, false));
      return;
    }
    this.seen.set(target, seenOf(st, true));
    await this.emit(EventType.CREATE, target);
    // A directory moved within the tree is rescanned silently; a new one is announced.
    if (st.isDirectory() && this.options.recursive) await this.addDir(target, !from);
  }

  private async changed(target: string, st: BigIntStats, before: Seen): Promise<void> {
    let type: EventType | undefined;
    const contentChanged = !before.dir && (st.size !== before.size || st.mtimeNs !== before.mtimeNs);
    const attrsChanged =
      st.mode !== before.mode || st.uid !== before.uid || st.gid !== before.gid || st.ctimeNs !== before.ctimeNs;
    if (contentChanged) type = EventType.WRITE;
    else if (attrsChanged) type = EventType.CHMOD;
    else if (before.fresh && !before.dir) type = st.size > 0n ? EventType.WRITE : EventType.CHMOD;
    this.seen.set(target, seenOf(st, false));
    if (type !== undefined) await this.emit(type, target);
  }

  /** A path is gone: hold its place in the output until we know whether it moved. */
  private vanish(target: string, before: Seen): void {
    this.forget(target, before);
    const slot: Slot = { ready: false };
    this.slots.push(slot);
    this.vanished.set(`${before.dev}:${before.ino}`, { path: target, slot });
  }

  /** Once no raw events are waiting, what vanished and did not reappear was removed. */
  private settle(): void {
    if (this.queued > 0 || this.closed) return;
    for (const { path: gone, slot } of this.vanished.values()) this.resolve(slot, EventType.REMOVE, gone);
    this.vanished.clear();
    this.flush();
  }

  /** Drops a path, and for a directory everything known and watched under it. */
  private forget(target: string, before: Seen): void {
    this.seen.delete(target);
    if (!before.dir) return;
    const prefix = target + path.sep;
    for (const p of this.seen.keys()) if (p.startsWith(prefix)) this.seen.delete(p);
    for (const [dir, w] of this.watchers) {
      if (dir === target || dir.startsWith(prefix)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
  }

  /** The watched directory itself was removed or moved away: the watch ends. */
  private async checkRoot(): Promise<void> {
    const st = await stat(this.options.root, { bigint: true }).catch(() => undefined);
    if (st?.ino === this.rootIno) return;
    this.fail(new ConnectError(`watched directory was removed or moved: ${this.options.root}`, Code.NotFound));
  }

  private async emit(type: EventType, target: string): Promise<void> {
    const slot: Slot = { ready: false };
    this.slots.push(slot);
    const event = this.event(type, target);
    if (this.options.includeEntry) {
      event.entry = await entryInfo(target, this.options.runtime.names).catch(() => undefined);
    }
    slot.event = event;
    slot.ready = true;
    this.flush();
  }

  private resolve(slot: Slot, type: EventType, target: string): void {
    slot.event = this.event(type, target);
    slot.ready = true;
    this.flush();
  }

  private event(type: EventType, target: string): FilesystemEvent {
    return create(FilesystemEventSchema, { name: path.relative(this.options.root, target), type });
  }

  private flush(): void {
    while (this.slots.length > 0 && this.slots[0].ready) {
      const { event } = this.slots.shift() as Slot;
      if (event && !this.closed) this.options.onEvent(event);
    }
  }

  private fail(err: ConnectError): void {
    if (this.closed) return;
    this.close();
    this.options.onError(err);
  }
}

function seenOf(st: BigIntStats, fresh: boolean): Seen {
  return {
    dev: st.dev,
    ino: st.ino,
    dir: st.isDirectory(),
    size: st.size,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    fresh,
  };
}

function inodeKey(st: BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}
