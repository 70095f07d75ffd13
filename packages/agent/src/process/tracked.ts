import type { ProcessConfig } from "@tether/protocol/process";
import { type Child, type ChildSink, signalGroup, spawnChild } from "./child.js";
import { type DeadlineReason, Deadlines } from "./deadlines.js";
import type { ExitStatus } from "./exit-status.js";
import type { LaunchSpec } from "./launch.js";
import { agentOomKills } from "./oom.js";
import { DEFAULT_LOG_LIMIT, type Offsets, type OutputKind, OutputLog } from "./output-log.js";
import { Subscription } from "./subscription.js";

/** Default time between SIGTERM and SIGKILL when a deadline kills a process group. */
export const DEFAULT_KILL_GRACE_MS = 2000;

/** What a start may ask beyond envd's StartRequest. */
export interface ExecControls {
  /** Idempotency key of the start. */
  key?: string;
  timeoutMs?: number;
  idleTimeoutMs?: number;
  killGraceMs?: number;
  /** Bytes of output kept per stream for replay. */
  logLimit?: number;
}

export type ExitReasonName = "exited" | "signaled" | "timeout" | "idle_timeout" | "oom_killed";

/** How a process ended: envd's view (status) and ours (reason, signal name, totals). */
export interface ProcessEnd {
  status: ExitStatus;
  reason: ExitReasonName;
  /** One line for people. */
  message: string;
  offsets: Offsets;
}

/**
 * One process the agent started: its output log (which every attached client reads from
 * at its own pace), its deadlines, and how it ended. Shared by envd's Process service and
 * tether.v1.Exec.
 */
export class TrackedProcess implements ChildSink {
  readonly config: ProcessConfig;
  readonly tag: string | undefined;
  readonly key: string | undefined;
  readonly log: OutputLog;
  /** Settles once the child was spawned (or could not be). */
  readonly spawned: Promise<void>;
  /**
   * The live child; dropped once the end is known, since a finished process stays in the
   * table for a minute and its child holds the pipes, their streams and the ChildProcess
   * (about 2 KiB of heap each, and ten thousand quick commands can finish in that minute).
   */
  private child: Child | undefined;
  private childPid: number | undefined;
  private endInfo: ProcessEnd | undefined;
  private readonly subscribers = new Set<Subscription>();
  private readonly endWaiters: (() => void)[] = [];
  private readonly deadlines: Deadlines;
  private readonly killGraceMs: number;
  private settleSpawn!: (err?: unknown) => void;
  private deadlineHit: { reason: DeadlineReason; after: number } | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  /** The agent sent SIGKILL itself: such a death is no OOM kill. */
  private sentKill = false;
  private oomBefore: number | undefined;
  /** What to spawn; dropped once spawned (its environment is a copy per process). */
  private spec: LaunchSpec | undefined;

  constructor(spec: LaunchSpec, controls: ExecControls = {}) {
    this.spec = spec;
    this.config = spec.config;
    this.tag = spec.tag;
    this.key = controls.key;
    this.killGraceMs = controls.killGraceMs || DEFAULT_KILL_GRACE_MS;
    this.log = new OutputLog(controls.logLimit || DEFAULT_LOG_LIMIT, (pause) => this.setPaused(pause));
    this.deadlines = new Deadlines(controls, (reason) => this.expire(reason, controls));
    this.spawned = new Promise<void>((resolve, reject) => {
      this.settleSpawn = (err) => (err === undefined ? resolve() : reject(err));
    });
    this.spawned.catch(() => {});
  }

  /** Spawns the child; subscribers see `start` first and miss no output. */
  async spawn(): Promise<void> {
    try {
      this.oomBefore = agentOomKills();
      if (!this.spec) throw new Error("process already spawned");
      this.child = await spawnChild(this.spec, this);
      this.spec = undefined;
      this.childPid = this.child.pid;
      // It may have ended before spawnChild returned.
      if (this.endInfo) this.child = undefined;
    } catch (err) {
      this.settleSpawn(err);
      throw err;
    }
    this.deadlines.start();
    this.settleSpawn();
    this.notifyAll();
  }

  get pid(): number {
    if (this.childPid === undefined) throw new Error("process not spawned yet");
    return this.childPid;
  }

  get hasSpawned(): boolean {
    return this.childPid !== undefined;
  }

  get running(): boolean {
    return this.childPid !== undefined && this.endInfo === undefined;
  }

  /** How it ended, once it did. */
  get end(): ProcessEnd | undefined {
    return this.endInfo;
  }

  /** The live child, for input and resizes. */
  get process(): Child {
    if (!this.child) throw new Error(this.endInfo ? `process ${this.childPid} has ended` : "process not spawned yet");
    return this.child;
  }

  /**
   * Sends a signal to the process group (or the process alone). Once the end is known
   * only the group is left to signal (what the leader left behind in it).
   */
  signal(signal: NodeJS.Signals, group = true): void {
    if (signal === "SIGKILL") this.sentKill = true;
    if (this.child) this.child.signal(signal, group);
    else signalGroup(this.pid, signal, false, group);
  }

  /**
   * Attaches a client reading from `from` (per stream offsets). A blocking client holds
   * the process's output back while it lags; a lossy one skips what it missed.
   */
  subscribe(from: Offsets, options: { blocking: boolean; keepaliveMs?: number }): Subscription {
    const sub = new Subscription(this, from, options.blocking, options.keepaliveMs);
    this.subscribers.add(sub);
    return sub;
  }

  /** Called by a subscription that closed. */
  unsubscribe(sub: Subscription): void {
    this.subscribers.delete(sub);
  }

  /** Resolves once the end is known. */
  ended(): Promise<void> {
    if (this.endInfo) return Promise.resolve();
    return new Promise((resolve) => this.endWaiters.push(resolve));
  }

  /** Drops every subscriber (their streams end without an end event). */
  detachAll(): void {
    for (const sub of [...this.subscribers]) sub.close();
  }

  onOutput(kind: OutputKind, chunk: Uint8Array): void {
    this.deadlines.output();
    this.log.append(kind, chunk);
    this.notifyAll();
  }

  onEnd(status: ExitStatus): void {
    this.deadlines.stop();
    void this.describeEnd(status).then((end) => {
      this.endInfo = end;
      this.child = undefined;
      this.notifyAll();
      for (const resolve of this.endWaiters.splice(0)) resolve();
    });
  }

  private async describeEnd(status: ExitStatus): Promise<ProcessEnd> {
    const offsets = this.log.offsets;
    const hit = this.deadlineHit;
    if (hit) {
      const what = hit.reason === "timeout" ? "timed out after" : "printed nothing for";
      const how = status.signal ? `ended by ${status.signal}` : `exited with code ${status.exitCode}`;
      return {
        status,
        reason: hit.reason,
        message: `${what} ${hit.after} ms, so its process group got SIGTERM (and SIGKILL ${this.killGraceMs} ms later); it ${how}`,
        offsets,
      };
    }
    if (status.signal === "SIGKILL" && !this.sentKill) {
      const before = this.oomBefore;
      const after = agentOomKills();
      if (before !== undefined && after !== undefined && after > before) {
        return { status, reason: "oom_killed", message: "killed by the kernel's OOM killer (out of memory)", offsets };
      }
    }
    if (status.signal) return { status, reason: "signaled", message: `killed by ${status.signal}`, offsets };
    return { status, reason: "exited", message: `exited with code ${status.exitCode}`, offsets };
  }

  /** A deadline passed: SIGTERM to the group now, SIGKILL after the grace time. */
  private expire(reason: DeadlineReason, controls: ExecControls): void {
    if (!this.running) return;
    this.deadlineHit = {
      reason,
      after: (reason === "timeout" ? controls.timeoutMs : controls.idleTimeoutMs) ?? 0,
    };
    this.signalQuietly("SIGTERM");
    // Sent even if the leader died of the SIGTERM: group members that ignored it remain.
    this.killTimer = setTimeout(() => this.signalQuietly("SIGKILL"), this.killGraceMs);
    this.killTimer.unref();
  }

  private signalQuietly(signal: NodeJS.Signals): void {
    try {
      this.signal(signal, true);
    } catch {
      // Gone already.
    }
  }

  private setPaused(pause: boolean): void {
    if (!this.child) return;
    if (pause) {
      this.child.pauseOutput();
      this.deadlines.pause();
    } else {
      this.child.resumeOutput();
      this.deadlines.resume();
    }
  }

  private notifyAll(): void {
    for (const sub of this.subscribers) sub.notify();
  }
}
