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
 * Finished processes kept at most: beyond it the oldest is forgotten before its retention
 * ends (33 commands a second, sustained for the minute, reach it). Each costs about 4 KiB
 * of live heap, and V8 lets the heap grow to a few times what lives: under 600 commands a
 * second the agent levelled at 266 MiB RSS keeping 10,000, 158 MiB keeping 2,000, 130
 * keeping 200. Without a cap the records grew with the rate: 329 MiB after 4 minutes of
 * `npm run stress`, still rising.
 */
export const FINISHED_MAX = 2_000;

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
  /** Finished processes still known, oldest first, with when each ended (one timer sweeps them). */
  private readonly finished = new Map<TrackedProcess, number>();
  private sweep: NodeJS.Timeout | undefined;
  /** Finished processes whose logs still hold output, oldest first, with the bytes each held when it ended. */
  private readonly finishedLogs = new Map<TrackedProcess, number>();
  private finishedLogBytes = 0;

  private readonly finishedMax: number;
  private readonly retentionMs: number;

  constructor(options: { finishedMax?: number; retentionMs?: number } = {}) {
    this.finishedMax = options.finishedMax ?? FINISHED_MAX;
    this.retentionMs = options.retentionMs ?? FINISHED_RETENTION_MS;
  }

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
      this.finished.set(proc, Date.now());
      this.keepFinishedLog(proc);
      for (const oldest of this.finished.keys()) {
        if (this.finished.size <= this.finishedMax) break;
        this.forget(oldest);
      }
      this.scheduleSweep();
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
    clearTimeout(this.sweep);
    this.sweep = undefined;
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
    this.finished.clear();
    this.finishedLogs.clear();
    this.finishedLogBytes = 0;
  }

  /**
   * Keeps a finished process's log for replay, releasing the oldest such logs beyond the
   * budget. Counted as each log was when its process ended: a running total, so that each
   * end costs the same however many finished processes there are.
   */
  private keepFinishedLog(proc: TrackedProcess): void {
    const bytes = proc.log.retainedBytes;
    this.finishedLogs.set(proc, bytes);
    this.finishedLogBytes += bytes;
    for (const oldest of this.finishedLogs.keys()) {
      if (this.finishedLogBytes <= FINISHED_LOG_BUDGET) break;
      this.dropFinishedLog(oldest);
      oldest.log.release();
    }
  }

  private dropFinishedLog(proc: TrackedProcess): void {
    const bytes = this.finishedLogs.get(proc);
    if (bytes === undefined) return;
    this.finishedLogs.delete(proc);
    this.finishedLogBytes -= bytes;
  }

  /** A finished process is no longer found by pid, tag or key. */
  private forget(proc: TrackedProcess): void {
    this.finished.delete(proc);
    this.dropFinishedLog(proc);
    if (this.byPid.get(proc.pid) === proc) this.byPid.delete(proc.pid);
    if (proc.tag && this.byTag.get(proc.tag) === proc) this.byTag.delete(proc.tag);
    if (proc.key && this.byKey.get(proc.key) === proc) this.byKey.delete(proc.key);
  }

  /** Arms the one timer for the oldest finished process's end of retention. */
  private scheduleSweep(): void {
    if (this.sweep) return;
    const oldest = this.finished.values().next();
    if (oldest.done) return;
    this.sweep = setTimeout(
      () => {
        this.sweep = undefined;
        const now = Date.now();
        for (const [proc, endedAt] of this.finished) {
          if (now - endedAt < this.retentionMs) break;
          this.forget(proc);
        }
        this.scheduleSweep();
      },
      Math.max(0, oldest.value + this.retentionMs - Date.now()),
    );
    this.sweep.unref();
  }
}
