import type { UserDirectory } from "../auth/users.js";
import type { AgentContext } from "../context.js";

/** How long after an upload's rename a watcher still attributes the path's inode to it. */
const UPLOAD_MEMORY_MS = 5_000;

/** A watcher told of uploads the agent renames into place (see DirWatcher.uploaded). */
export interface UploadListener {
  uploaded(target: string, ino: bigint, created: boolean): Promise<void>;
}

/**
 * Uploads renamed into place, and the watchers to tell of them. envd writes an upload in
 * place (open with O_CREAT|O_TRUNC, chmod, write), which inotify reports as CREATE (for a
 * new file), CHMOD and WRITE; ours are atomic renames of a temp file. So the upload tells
 * the watchers itself, before its HTTP response, and each reports envd's events; the
 * rename's own inotify events, for the inode recorded here, are not reported again.
 */
export class RecentUploads {
  private readonly committed = new Map<string, { ino: bigint; at: number }>();
  private readonly listeners = new Set<UploadListener>();

  /** Called before the rename: the inode that is about to appear at `target`. */
  record(target: string, ino: bigint): void {
    const now = Date.now();
    for (const [p, { at }] of this.committed) if (now - at > UPLOAD_MEMORY_MS) this.committed.delete(p);
    this.committed.set(target, { ino, at: now });
  }

  /** True when the file at `target` (inode `ino`) is one an upload put there. */
  isUpload(target: string, ino: bigint): boolean {
    const entry = this.committed.get(target);
    return entry !== undefined && entry.ino === ino && Date.now() - entry.at <= UPLOAD_MEMORY_MS;
  }

  /** After the rename: every watcher has reported the upload once this resolves. */
  async renamed(target: string, ino: bigint, created: boolean): Promise<void> {
    await Promise.all([...this.listeners].map((listener) => listener.uploaded(target, ino, created)));
  }

  listen(listener: UploadListener): void {
    this.listeners.add(listener);
  }

  unlisten(listener: UploadListener): void {
    this.listeners.delete(listener);
  }
}

/** What the file service and the file endpoints of one agent share. */
export interface FilesRuntime {
  names: UserDirectory;
  uploads: RecentUploads;
}

const runtimes = new WeakMap<AgentContext, FilesRuntime>();

export function filesRuntime(ctx: AgentContext): FilesRuntime {
  let runtime = runtimes.get(ctx);
  if (!runtime) {
    runtime = { names: ctx.users, uploads: new RecentUploads() };
    runtimes.set(ctx, runtime);
  }
  return runtime;
}
