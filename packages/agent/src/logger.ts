import type { Logger as PinoLogger } from "pino";

/** What the agent logs through: pino's methods it uses (a pino logger is one). */
export interface Logger {
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  debug: LogFn;
}

export interface LogFn {
  (fields: object, message?: string): void;
  (message: string): void;
}

type Method = keyof Logger;

/** pino's levels by name, and "silent". */
const LEVELS: Record<string, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

/**
 * The agent's one logger: pino, JSON lines on stderr, so stdout stays free for callers.
 *
 * Loading and setting up pino is about 4 ms of CPU, which a fresh sandbox's agent would
 * spend before it answers anyone. So pino loads when `load` is called, which the agent does
 * once it is first idle after starting, or at once for a warning or an error. Lines logged
 * before are kept, in order, and written then. A bad level is refused here, as pino would.
 */
export class AgentLogger implements Logger {
  private pino: PinoLogger | undefined;
  private queue: [Method, unknown[]][] = [];
  private loading: Promise<void> | undefined;
  private readonly threshold: number;

  constructor(readonly level: string) {
    const threshold = LEVELS[level];
    if (threshold === undefined) throw new Error(`unknown log level "${level}": use one of ${Object.keys(LEVELS)}`);
    this.threshold = threshold;
  }

  info: LogFn = (...args: unknown[]) => this.log("info", args);
  warn: LogFn = (...args: unknown[]) => this.log("warn", args);
  error: LogFn = (...args: unknown[]) => this.log("error", args);
  debug: LogFn = (...args: unknown[]) => this.log("debug", args);

  /** Loads pino (once) and writes what was logged before; resolves when it has. */
  load(): Promise<void> {
    // The default export: a bundle's CommonJS chunk has no named ones.
    this.loading ??= import("pino").then(
      ({ default: pino }) => {
        const logger = pino({ name: "tetherd", level: this.level }, pino.destination({ fd: 2, sync: false }));
        for (const [method, args] of this.queue) (logger[method] as (...a: unknown[]) => void)(...args);
        this.queue = [];
        this.pino = logger;
      },
      (err: unknown) => {
        process.stderr.write(`tetherd: cannot load its logger (pino): ${(err as Error).message}\n`);
      },
    );
    return this.loading;
  }

  private log(method: Method, args: unknown[]): void {
    if (this.pino) {
      (this.pino[method] as (...a: unknown[]) => void)(...args);
      return;
    }
    if (LEVELS[method] < this.threshold) return;
    this.queue.push([method, args]);
    if (LEVELS[method] >= LEVELS.warn) void this.load();
  }
}

export function createLogger(level: string = process.env.TETHER_LOG_LEVEL ?? "info"): AgentLogger {
  return new AgentLogger(level);
}
