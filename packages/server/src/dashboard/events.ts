import type { Sandboxes, SandboxInfo } from "@tether/host";
import type { Logger } from "pino";
import { E2B_VISIBLE_STATES, e2bState, factsOf, listedView } from "../api/views.js";
import { type SandboxUsage, UsageSampler } from "./usage.js";

/** A sandbox as the dashboard's table shows it: E2B's listed view plus the backend and host state. */
export function dashboardView(info: SandboxInfo) {
  return { ...listedView(info), backend: info.backend, hostState: info.state, image: info.image };
}
export type DashboardSandbox = ReturnType<typeof dashboardView>;

export type SandboxEvent =
  | { type: "snapshot"; sandboxes: DashboardSandbox[] }
  | { type: "changed"; sandbox: DashboardSandbox }
  | { type: "removed"; sandboxID: string }
  /** The team's running sandboxes' CPU and memory, sampled every few seconds while someone watches. */
  | { type: "usage"; usage: SandboxUsage[] };

type Listener = (event: SandboxEvent) => void;

/**
 * The registry's changes, per team, for the dashboard's live table: one registry read
 * per tick for all watchers (and at once after any change made through the API), diffed
 * against the last one, so a browser gets only what changed and never polls.
 */
export class SandboxWatch {
  private readonly listeners = new Map<Listener, string>();
  private last = new Map<string, { team: string; json: string; running: boolean }>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private readonly usage: UsageSampler;

  constructor(
    private readonly sandboxes: Sandboxes,
    private readonly log: Logger,
    private readonly intervalMs = 2000,
    usageIntervalMs = 5000,
  ) {
    this.usage = new UsageSampler(
      sandboxes,
      () => [...this.last].filter(([, e]) => e.running).map(([id, e]) => ({ id, team: e.team })),
      (team, usage) => this.send(team, { type: "usage", usage }),
      log,
      usageIntervalMs,
    );
  }

  /** Sends the team's sandboxes now, then their changes; returns the unsubscribe. */
  async subscribe(team: string, listener: Listener): Promise<() => void> {
    const all = await this.read();
    listener({
      type: "snapshot",
      sandboxes: all.filter((s) => factsOf(s).team === team).map(dashboardView),
    });
    const usage = this.usage.last(team);
    if (usage.length > 0) listener({ type: "usage", usage });
    this.listeners.set(listener, team);
    this.timer ??= setInterval(() => this.poke(), this.intervalMs);
    this.usage.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
        this.usage.stop();
      }
    };
  }

  /** Reads the registry again soon (an API call just changed something). */
  poke(): void {
    if (this.listeners.size === 0) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.diff()
      .catch((err) => this.log.warn({ err }, "dashboard watch failed"))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.poke();
        }
      });
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.usage.stop();
    this.listeners.clear();
  }

  private async read(): Promise<SandboxInfo[]> {
    const list = await this.sandboxes.list({ states: E2B_VISIBLE_STATES });
    const visible = list.filter((s) => e2bState(s) !== undefined);
    if (this.last.size === 0) {
      this.last = new Map(
        visible.map((s) => [
          s.id,
          { team: factsOf(s).team, json: JSON.stringify(dashboardView(s)), running: s.state === "running" },
        ]),
      );
    }
    return visible;
  }

  private async diff(): Promise<void> {
    const list = await this.sandboxes.list({ states: E2B_VISIBLE_STATES });
    const now = new Map<string, { team: string; json: string; view: DashboardSandbox; running: boolean }>();
    for (const s of list) {
      if (e2bState(s) === undefined) continue;
      const view = dashboardView(s);
      now.set(s.id, { team: factsOf(s).team, json: JSON.stringify(view), view, running: s.state === "running" });
    }
    const events: [string, SandboxEvent][] = [];
    for (const [id, entry] of now) {
      if (this.last.get(id)?.json !== entry.json) events.push([entry.team, { type: "changed", sandbox: entry.view }]);
    }
    for (const [id, entry] of this.last) {
      if (!now.has(id)) events.push([entry.team, { type: "removed", sandboxID: id }]);
    }
    this.last = new Map([...now].map(([id, e]) => [id, { team: e.team, json: e.json, running: e.running }]));
    for (const [team, event] of events) this.send(team, event);
  }

  private send(team: string, event: SandboxEvent): void {
    for (const [listener, wanted] of this.listeners) if (wanted === team) listener(event);
  }
}
