import { RateLimitedError } from "../errors.js";

export interface TeamLimitOptions {
  /** Running (and paused) sandboxes a team may have at once; default 100. */
  maxSandboxes?: number;
  /** Creates a team may have in flight at once; default 20. */
  maxCreatesInFlight?: number;
}

/**
 * Per-team limits. Over a limit the API answers 429 with an integer `Retry-After`,
 * which the e2b SDK honours by waiting and retrying (up to three times).
 */
export class TeamLimits {
  readonly maxSandboxes: number;
  readonly maxCreatesInFlight: number;
  private readonly inFlight = new Map<string, number>();

  constructor(options: TeamLimitOptions = {}) {
    this.maxSandboxes = options.maxSandboxes ?? 100;
    this.maxCreatesInFlight = options.maxCreatesInFlight ?? 20;
  }

  /** Creates in flight, over every team. */
  get creating(): number {
    let n = 0;
    for (const v of this.inFlight.values()) n += v;
    return n;
  }

  /**
   * Takes a create slot for the team (release it when the create ends), or throws
   * RateLimitedError when the team is at either limit; `live` is how many it has now.
   */
  acquire(team: string, live: number): () => void {
    const flying = this.inFlight.get(team) ?? 0;
    if (flying >= this.maxCreatesInFlight) {
      throw new RateLimitedError(
        `team ${team} has ${flying} sandbox creations in flight (limit ${this.maxCreatesInFlight})`,
        1,
      );
    }
    if (live + flying >= this.maxSandboxes) {
      throw new RateLimitedError(`team ${team} has ${live} sandboxes (limit ${this.maxSandboxes})`, 2);
    }
    this.inFlight.set(team, flying + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.inFlight.get(team) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(team);
      else this.inFlight.set(team, n);
    };
  }
}
