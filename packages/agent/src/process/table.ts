import { Code, ConnectError } from "@connectrpc/connect";
import type { ProcessSelector } from "@tether/protocol/process";
import type { TrackedProcess } from "./tracked.js";

/**
 * How long a finished process still answers Connect with its end event: the promised
 * minute (envd's), plus a margin for a client that asks right at the minute mark.
 */
export const FINISHED_RETENTION_MS = 70_000;

/** Output logs of finished processes kept for replay, in total; the oldest are dropped first. */
export const FINISHED_LOG_BUDGET = 64 << 20;

/**
 * The agent's processes by pid, by tag and by start key: running ones, and finished ones
 * for a while so a client that reconnects late still learns how its process ended (and
 * can replay what is left of its output log, within FINISHED_LOG_BUDGET).
 */
export class ProcessTable {
  private readonly byPid = new Map<number, TrackedProcess>();
  private readonly byTag = new Map<string, TrackedProcess>();
  /** Keyed processes from the moment a start claims the key, before they are spawned. */
  private readonly byKey = new Map<string, TrackedProcess>();
  private readonly expiries = new Set<NodeJS.Timeout>();
  /** Finished processes whose logs still hold output, oldest first. */
  private readonly finishedLogs: TrackedProcess[] = [];

  /**
   * The process a key names, or a new one made by `create` and registered under the key
   * in the same tick (so two concurrent starts with one key make one process). A process
   * that fails to spawn gives its key back.
   */
  claimKey(key: string, create: () => TrackedProcess): { proc: TrackedProcess; existing: boolean } {
    const found = this.byKey.get(key);
    if (found) return { proc: found, existing: true };
    const proc = create();
    this.byKey.set(key, proc);
    proc.spawned.catch(() => {
      if (this.byKey.get(key) === proc) this.byKey.delete(key);
    });
    return { proc, existing: false };
  }

  /** The process a key names, running or recently finished. */
  findKey(key: string): TrackedProcess {
    const proc = this.byKey.get(key);
    if (!proc) throw new ConnectError(`no process with key "${key}"`, Code.NotFound);
    return proc;
  }

  /** Every process the table knows: running and recently finished, keyed ones being spawned excluded. */
  all(): TrackedProcess[] {
    const procs = new Set(this.byPid.values());
    return [...procs];
  }

  /** Refuses a tag a running process already has. */
  checkTagFree(tag: string | undefined): void {
    if (tag && this.byTag.get(tag)?.running) {
      throw new ConnectError(`a running process already has tag "${tag}"`, Code.AlreadyExists);
    }
  }

  /** Registers a spawned process; it is forgotten FINISHED_RETENTION_MS after it ends. */
  add(proc: TrackedProcess): void {
    this.byPid.set(proc.pid, proc);
    if (proc.tag) this.byTag.set(proc.tag, proc);
    void proc.ended().then(() => {
      this.keepFinishedLog(proc);
      const timer = setTimeout(() => {
        this.expiries.delete(timer);
        if (this.byPid.get(proc.pid) === proc) this.byPid.delete(proc.pid);
        if (proc.tag && this.byTag.get(proc.tag) === proc) this.byTag.delete(proc.tag);
        if (proc.key && this.byKey.get(proc.key) === proc) this.byKey.delete(proc.key);
        const at = this.finishedLogs.indexOf(proc);
        if (at >= 0) this.finishedLogs.splice(at, 1);
      }, FINISHED_RETENTION_MS);
      timer.unref();
      this.expiries.add(timer);
    });
  }

  /** The process a selector names, running or recently finished; not_found otherwise. */
  find(selector: ProcessSelector | { selector?: ProcessSelector["selector"] } | undefined): TrackedProcess {
    const sel = selector?.selector;
    if (sel?.case === "pid") {
      const proc = this.byPid.get(sel.value);
      if (!proc) throw new ConnectError(`no process with pid ${sel.value}`, Code.NotFound);
      return proc;
    }
    if (sel?.case === "tag") {
      const proc = this.byTag.get(sel.value);
      if (!proc) throw new ConnectError(`no process with tag "${sel.value}"`, Code.NotFound);
      return proc;
    }
    throw new ConnectError("process selector (pid or tag) is required", Code.InvalidArgument);
  }

  /** Like find, but only a process that is still running. */
  findRunning(selector: Parameters<ProcessTable["find"]>[0]): TrackedProcess {
    const proc = this.find(selector);
    if (!proc.running) throw new ConnectError(`process ${proc.pid} has already exited`, Code.NotFound);
    return proc;
  }

  running(): TrackedProcess[] {
    return [...this.byPid.values()].filter((p) => p.running);
  }

  /** Kills every process group the agent started, finished leaders' leftovers included. */
  killAll(): void {
    for (const timer of this.expiries) clearTimeout(timer);
    this.expiries.clear();
    for (const proc of this.byPid.values()) {
      try {
        proc.signal("SIGKILL");
      } catch {
        // Already gone.
      }
      proc.detachAll();
    }
    this.byPid.clear();
    this.byTag.clear();
    this.byKey.clear();
    this.finishedLogs.length = 0;
  }

  /** Keeps a finished process's log for replay, dropping the oldest such logs beyond the budget. */
  private keepFinishedLog(proc: TrackedProcess): void {
    this.finishedLogs.push(proc);
    let total = this.finishedLogs.reduce((sum, p) => sum + p.log.retainedBytes, 0);
    while (total > FINISHED_LOG_BUDGET && this.finishedLogs.length > 0) {
      const oldest = this.finishedLogs.shift() as TrackedProcess;
      total -= oldest.log.retainedBytes;
      oldest.log.release();
      total += oldest.log.retainedBytes;
    }
  }
}
