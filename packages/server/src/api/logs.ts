import { type LogLine, logLines, type Sandboxes, type SandboxInfo } from "@tether/host";

/** E2B's LogLevel, least severe first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** E2B's SandboxLogEntry, with the raw line (v1's SandboxLog.line) and the time as a Date. */
export interface SandboxLogRecord {
  at: Date;
  line: string;
  level: LogLevel;
  message: string;
  fields: Record<string, string>;
}

/** Which of a sandbox's log lines to read, as E2B's v1 (`start`, `limit`) and v2 (`cursor`, `direction`, ...) ask. */
export interface LogQuery {
  /** ms since the epoch: forward, lines at or after it; backward, at or before it. */
  cursor?: number;
  limit: number;
  direction: "forward" | "backward";
  /** The least severe level returned. */
  level?: LogLevel;
  /** A case-sensitive substring of the message. */
  search?: string;
}

/** E2B's default and our cap on the lines one call returns. */
export const DEFAULT_LOG_LIMIT = 1000;
export const MAX_LOG_LIMIT = 10_000;

/**
 * A sandbox's log (its agent's and its command's output, as the host recorded it with
 * times), filtered and paged as E2B's logs endpoints do: forward oldest first from the
 * cursor, backward newest first down to it. Lines recorded without a time (a `local`
 * sandbox started by a tether from before timestamps) count as written at its creation.
 */
export async function readSandboxLogs(
  sandboxes: Sandboxes,
  info: SandboxInfo,
  query: LogQuery,
): Promise<SandboxLogRecord[]> {
  if (query.limit <= 0) return [];
  const forward = query.direction === "forward";
  const since = forward && query.cursor !== undefined ? new Date(query.cursor) : undefined;
  const least = LOG_LEVELS.indexOf(query.level ?? "debug");
  const out: SandboxLogRecord[] = [];
  for await (const line of logLines(sandboxes.logs(info.id, { timestamps: true, ...(since ? { since } : {}) }))) {
    const record = logRecord(line, info.createdAt);
    const ms = record.at.getTime();
    if (query.cursor !== undefined && (forward ? ms < query.cursor : ms > query.cursor)) continue;
    if (LOG_LEVELS.indexOf(record.level) < least) continue;
    if (query.search !== undefined && !record.message.includes(query.search)) continue;
    out.push(record);
    if (forward && out.length >= query.limit) break;
    // Backward keeps only the newest `limit` seen so far.
    if (!forward && out.length > query.limit) out.shift();
  }
  return forward ? out : out.reverse();
}

/**
 * One line as a log entry. A pino-shaped JSON line (the agent's own log, or a command
 * that logs so) gives its level, message and fields; any other line is the message, at
 * level info (a command's stderr is not known to be an error).
 */
export function logRecord(line: LogLine, fallback: Date): SandboxLogRecord {
  const at = line.at ?? fallback;
  const fields: Record<string, string> = { stream: line.stream };
  const structured = line.text.startsWith("{") ? parseObject(line.text) : undefined;
  if (structured && typeof structured.level === "number" && typeof structured.msg === "string") {
    for (const [key, value] of Object.entries(structured)) {
      if (key === "level" || key === "msg" || key === "time") continue;
      fields[key] = typeof value === "string" ? value : JSON.stringify(value);
    }
    return { at, line: line.text, level: pinoLevel(structured.level), message: structured.msg, fields };
  }
  return { at, line: line.text, level: "info", message: line.text, fields };
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** pino's numbers (trace 10, debug 20, info 30, warn 40, error 50, fatal 60) as E2B's four levels. */
function pinoLevel(level: number): LogLevel {
  if (level < 30) return "debug";
  if (level < 40) return "info";
  if (level < 50) return "warn";
  return "error";
}
