import { type Logger, pino } from "pino";

export type { Logger };

/** The agent's one logger: JSON lines on stderr, so stdout stays free for callers. */
export function createLogger(level: string = process.env.TETHER_LOG_LEVEL ?? "info"): Logger {
  return pino({ name: "tetherd", level }, pino.destination({ fd: 2, sync: false }));
}
