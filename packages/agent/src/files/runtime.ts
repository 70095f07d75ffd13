import type { UserDirectory } from "../auth/users.js";
import type { AgentContext } from "../context.js";

/** How long after an upload's rename a watcher still attributes the path to it. */
const UPLOAD_MEMORY_MS = 5_000;

/**
 * Paths just replaced by an upload's atomic rename. Watchers use it to report what
 * envd (which writes in place) reports for an upload: CREATE and WRITE, or WRITE alone
 * over an existing file, instead of the rename of a temp file.
 */
export class RecentUploads {
  private readonly committed = new Map<string, number>();

  record(target: string): void {
    const now = Date.now();
    for (const [p, at] of this.committed) if (now - at > UPLOAD_MEMORY_MS) this.committed.delete(p);
    this.committed.set(target, now);
  }

  has(target: string): boolean {
    const at = this.committed.get(target);
    return at !== undefined && Date.now() - at <= UPLOAD_MEMORY_MS;
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
