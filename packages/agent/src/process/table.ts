import { Code, ConnectError } from "@connectrpc/connect";
import type { ProcessSelector } from "@tether/protocol/process";
import type { TrackedProcess } from "./tracked.js";

/** How long a finished process still answers Connect with its end event. */
export const FINISHED_RETENTION_MS = 60_000;

/**
 * The agent's processes by pid and by tag: running ones, and finished ones for a while
 * so a client that reconnects late still learns how its process ended. Finished entries
 * keep only their end event, never their output.
 */
export class ProcessTable {
  private readonly byPid = new Map<number, TrackedProcess>();
  private readonly byTag = new Map<string, TrackedProcess>();
  private readonly expiries = new Set<NodeJS.Timeout>();

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
      const timer = setTimeout(() => {
        this.expiries.delete(timer);
        if (this.byPid.get(proc.pid) === proc) this.byPid.delete(proc.pid);
        if (proc.tag && this.byTag.get(proc.tag) === proc) this.byTag.delete(proc.tag);
      }, FINISHED_RETENTION_MS);
      timer.unref();
      this.expiries.add(timer);
    });
  }

  /** The process a selector names, running or recently finished; not_found otherwise. */
  find(selector: ProcessSelector | undefined): TrackedProcess {
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
  findRunning(selector: ProcessSelector | undefined): TrackedProcess {
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
        proc.process.signal("SIGKILL");
      } catch {
        // Already gone.
      }
      proc.detachAll();
    }
    this.byPid.clear();
    this.byTag.clear();
  }
}
