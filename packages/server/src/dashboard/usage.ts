import type { Sandboxes } from "@tether/host";
import type { Logger } from "pino";

/** A running sandbox's CPU and memory use at one moment, as the dashboard's table shows it. */
export interface SandboxUsage {
  sandboxID: string;
  /** Percent of the sandbox's own CPUs (its limit, else the host's). */
  cpuUsedPct: number;
  cpuCount: number;
  /** Bytes in use, page cache left out. */
  memUsed: number;
  /** The memory limit in bytes (the host's memory when unlimited). */
  memTotal: number;
  timestamp: string;
}

/** A sandbox to sample and the team it belongs to. */
export interface UsageTarget {
  id: string;
  team: string;
}

/**
 * Samples running sandboxes' CPU and memory for the dashboard's table, so no browser
 * polls a row: a round of the engine's one-shot stats (each takes the engine about a
 * second, as it compares two readings), at most `concurrency` at once, then a pause of
 * `intervalMs`, only between `start` and `stop` (while some dashboard is connected).
 * Each round's samples go to `publish` by team; a sandbox the engine cannot sample (it
 * stopped meanwhile, or its backend has no stats) is left out.
 */
export class UsageSampler {
  private running = false;
  private wake: (() => void) | undefined;
  private latest = new Map<string, { team: string; usage: SandboxUsage }>();

  constructor(
    private readonly sandboxes: Sandboxes,
    private readonly targets: () => UsageTarget[],
    private readonly publish: (team: string, usage: SandboxUsage[]) => void,
    private readonly log: Logger,
    private readonly intervalMs = 5000,
    private readonly concurrency = 3,
  ) {}

  /** The last round's samples of the team's sandboxes (for a dashboard that just connected). */
  last(team: string): SandboxUsage[] {
    return [...this.latest.values()].filter((e) => e.team === team).map((e) => e.usage);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  stop(): void {
    this.running = false;
    this.latest.clear();
    this.wake?.();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      try {
        await this.round();
      } catch (err) {
        this.log.warn({ err }, "sampling sandboxes' usage failed");
      }
      if (!this.running) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.intervalMs);
        timer.unref();
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private async round(): Promise<void> {
    const queue = this.targets();
    const now = new Map<string, { team: string; usage: SandboxUsage }>();
    const worker = async () => {
      for (let target = queue.shift(); target && this.running; target = queue.shift()) {
        const stats = await this.sandboxes.stats(target.id).catch((err) => {
          this.log.debug({ err, sandbox: target.id }, "no usage sample");
          return undefined;
        });
        if (!stats) continue;
        now.set(target.id, {
          team: target.team,
          usage: {
            sandboxID: target.id,
            cpuUsedPct: Math.round(stats.cpuUsedPct * 10) / 10,
            cpuCount: stats.cpuCount,
            memUsed: stats.memUsed,
            memTotal: stats.memTotal,
            timestamp: stats.at.toISOString(),
          },
        });
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, worker));
    if (!this.running) return;
    this.latest = now;
    const byTeam = new Map<string, SandboxUsage[]>();
    for (const { team, usage } of now.values()) byTeam.set(team, [...(byTeam.get(team) ?? []), usage]);
    for (const [team, usage] of byTeam) this.publish(team, usage);
  }
}
