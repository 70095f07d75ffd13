import type { ProcessConfig } from "@tether/protocol/process";
import { type Child, type ChildSink, type OutputKind, spawnChild } from "./child.js";
import type { ExitStatus } from "./exit-status.js";
import type { LaunchSpec } from "./launch.js";
import { EventSubscription, type ProcessEventInit } from "./subscription.js";

/**
 * One process the agent started: fans its output out to every client attached to it,
 * holds it back while one of them lags, and remembers how it ended.
 */
export class TrackedProcess implements ChildSink {
  readonly config: ProcessConfig;
  readonly tag: string | undefined;
  private child: Child | undefined;
  private endEvent: ProcessEventInit | undefined;
  private readonly subscribers = new Set<EventSubscription>();
  private lagging = 0;
  private readonly endWaiters: (() => void)[] = [];

  constructor(private readonly spec: LaunchSpec) {
    this.config = spec.config;
    this.tag = spec.tag;
  }

  /** Spawns the child; subscribers added before see `start` first and miss no output. */
  async spawn(): Promise<void> {
    this.child = await spawnChild(this.spec, this);
    const start: ProcessEventInit = { event: { case: "start", value: { pid: this.child.pid } } };
    for (const sub of this.subscribers) sub.push(start);
  }

  get pid(): number {
    if (!this.child) throw new Error("process not spawned yet");
    return this.child.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.endEvent === undefined;
  }

  /** The live child, for input, signals and resizes. */
  get process(): Child {
    if (!this.child) throw new Error("process not spawned yet");
    return this.child;
  }

  /** Attaches a client: `start`, then live output, then `end` (at once if it already ended). */
  subscribe(keepaliveMs: number | undefined): EventSubscription {
    const sub = new EventSubscription(
      (full) => this.setLagging(full),
      (s) => this.subscribers.delete(s),
      keepaliveMs,
    );
    if (this.child) sub.push({ event: { case: "start", value: { pid: this.child.pid } } });
    if (this.endEvent) {
      sub.push(this.endEvent);
      sub.finish();
    } else {
      this.subscribers.add(sub);
    }
    return sub;
  }

  /** Resolves once the end event is out. */
  ended(): Promise<void> {
    if (this.endEvent) return Promise.resolve();
    return new Promise((resolve) => this.endWaiters.push(resolve));
  }

  /** Drops every subscriber (their streams end without an end event). */
  detachAll(): void {
    for (const sub of [...this.subscribers]) sub.close();
  }

  onOutput(kind: OutputKind, chunk: Uint8Array): void {
    if (this.subscribers.size === 0) return;
    const event: ProcessEventInit = { event: { case: "data", value: { output: { case: kind, value: chunk } } } };
    for (const sub of this.subscribers) sub.push(event, chunk.byteLength);
  }

  onEnd(status: ExitStatus): void {
    this.endEvent = { event: { case: "end", value: status } };
    for (const sub of this.subscribers) {
      sub.push(this.endEvent);
      sub.finish();
    }
    this.subscribers.clear();
    if (this.lagging > 0) this.child?.resumeOutput();
    this.lagging = 0;
    for (const resolve of this.endWaiters.splice(0)) resolve();
  }

  private setLagging(full: boolean): void {
    if (this.endEvent) return;
    this.lagging += full ? 1 : -1;
    if (!this.child) return;
    if (full && this.lagging === 1) this.child.pauseOutput();
    if (!full && this.lagging === 0) this.child.resumeOutput();
  }
}
