import { RateLimitedError } from "../errors.js";

export interface TeamLimitOptions {
  /** Running (and paused) sandboxes a team may have at once; default 100. */
  maxSandboxes?: number;
  /** Creates a team may have under way at once; default 10. Further ones wait in line. */
  maxCreatesInFlight?: number;
  /** Creates that may wait in line for a slot, per team; default 100. Beyond it: 429. */
  maxQueuedCreates?: number;
}

/**
 * Per-team limits. Creates beyond the in-flight limit wait in line (a burst of creates
 * all succeed, at the pace the engine allows); a full line, or a team at its sandbox
 * limit, gets 429 with an integer `Retry-After`, which the e2b SDK honours by waiting
 * and retrying (up to three times).
 */
export class TeamLimits {
  readonly maxSandboxes: number;
  readonly maxCreatesInFlight: number;
  readonly maxQueuedCreates: number;
  private readonly inFlight = new Map<string, number>();
  private readonly queues = new Map<string, (() => void)[]>();

  constructor(options: TeamLimitOptions = {}) {
    this.maxSandboxes = options.maxSandboxes ?? 100;
    this.maxCreatesInFlight = options.maxCreatesInFlight ?? 10;
    this.maxQueuedCreates = options.maxQueuedCreates ?? 100;
  }

  /** Creates under way, over every team. */
  get creating(): number {
    let n = 0;
    for (const v of this.inFlight.values()) n += v;
    return n;
  }

  /** Creates waiting for a slot, over every team. */
  get queued(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /**
   * Takes a create slot for the team, waiting in line while the team has the most creates
   * under way; resolves with the slot's release. RateLimitedError when the line is full.
   */
  async acquire(team: string): Promise<() => void> {
    const flying = this.inFlight.get(team) ?? 0;
    if (flying >= this.maxCreatesInFlight) {
      const queue = this.queues.get(team) ?? [];
      if (queue.length >= this.maxQueuedCreates) {
        throw new RateLimitedError(`team ${team} has ${flying} creations under way and ${queue.length} waiting`, 2);
      }
      this.queues.set(team, queue);
      // The slot is handed over by the release that frees it (inFlight stays counted).
      await new Promise<void>((resolve) => queue.push(resolve));
    } else {
      this.inFlight.set(team, flying + 1);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queues.get(team)?.shift();
      if (next) return next();
      if (this.queues.get(team)?.length === 0) this.queues.delete(team);
      const n = (this.inFlight.get(team) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(team);
      else this.inFlight.set(team, n);
    };
  }

  /** RateLimitedError when `live` sandboxes plus the team's creates under way (this one included) pass the limit. */
  checkSandboxes(team: string, live: number): void {
    const flying = this.inFlight.get(team) ?? 0;
    if (live + flying > this.maxSandboxes) {
      throw new RateLimitedError(`team ${team} has ${live} sandboxes (limit ${this.maxSandboxes})`, 2);
    }
  }
}
