import { z } from "zod";
import { DEFAULT_LOG_LIMIT, LOG_LEVELS, MAX_LOG_LIMIT } from "./logs.js";

/** E2B's error body; the SDK reads `code`. */
export const ErrorBody = z.object({ code: z.number().int(), message: z.string() });

const StringMap = z.record(z.string(), z.string());

/**
 * NewSandboxV2 (`POST /v2/sandboxes`) and NewSandbox (`POST /sandboxes`, which adds
 * `secure`). Fields we do not act on are accepted, as E2B's API does, so unchanged
 * clients work; the ones that change behaviour are listed in the README.
 */
export const NewSandboxBody = z.looseObject({
  templateID: z.string().min(1).max(200),
  timeout: z
    .number()
    .int()
    .min(1)
    .max(86_400 * 30)
    .optional(),
  metadata: StringMap.optional(),
  envVars: StringMap.optional(),
  autoPause: z.boolean().optional(),
  autoPauseMemory: z.boolean().optional(),
  allow_internet_access: z.boolean().optional(),
  secure: z.boolean().optional(),
  autoResume: z.looseObject({ enabled: z.boolean().optional() }).optional(),
  volumeMounts: z.array(z.looseObject({ name: z.string(), path: z.string() })).optional(),
  // Tether's extension (E2B sizes sandboxes by template only): the sandbox's CPU and
  // memory limits, over its template's; the names are those of E2B's template fields.
  cpuCount: z.number().int().min(1).optional(),
  memoryMB: z.number().int().min(64).optional(),
  network: z
    .looseObject({
      allowPublicTraffic: z.boolean().optional(),
      allowOut: z.array(z.string()).optional(),
      denyOut: z.array(z.string()).optional(),
    })
    .optional(),
});
export type NewSandboxBody = z.infer<typeof NewSandboxBody>;

/** A body that may be left out (Fastify then has null): it reads as `{}`. */
export function optionalBody<T extends z.ZodType>(schema: T) {
  return z.preprocess((value) => value ?? {}, schema);
}

/** `{}` is allowed: the server's default timeout applies. */
export const ConnectBody = optionalBody(
  z.looseObject({ timeout: z.number().int().min(1).optional(), memory: z.boolean().optional() }),
);
export type ConnectBody = z.infer<typeof ConnectBody>;

export const TimeoutBody = z.object({ timeout: z.number().int().min(0) });
export const PauseBody = optionalBody(z.looseObject({ memory: z.boolean().optional() }));

export const SandboxParams = z.object({ sandboxID: z.string().regex(/^[a-z0-9]{1,64}$/) });

/** A query value sent once, repeated, or comma-separated: all become one list. */
const List = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(",")).filter((s) => s !== ""));

/**
 * The list filter's `metadata` is encoded twice: the SDK URL-encodes each key and value,
 * joins them as a query string, and sends that as one value.
 */
const Metadata = z.string().transform((raw, ctx) => {
  const out: Record<string, string> = {};
  try {
    for (const pair of raw.split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      const k = eq < 0 ? pair : pair.slice(0, eq);
      const v = eq < 0 ? "" : pair.slice(eq + 1);
      const dec = (s: string) => decodeURIComponent(decodeURIComponent(s.replaceAll("+", " ")));
      out[dec(k)] = dec(v);
    }
  } catch {
    ctx.addIssue({ code: "custom", message: "metadata is not a URL-encoded query string" });
    return z.NEVER;
  }
  return out;
});

/** E2B's sandbox states (see e2bState for the host states behind them). */
export const E2B_STATES = ["running", "paused"] as const;
export type E2bState = (typeof E2B_STATES)[number];

export const ListQuery = z.object({
  metadata: Metadata.optional(),
  state: List.pipe(z.array(z.enum(E2B_STATES))).optional(),
  startedAfter: z.coerce.date().optional(),
  template: z.string().optional(),
  order: z.enum(["asc", "desc"]).optional(),
  limit: z.coerce.number().int().min(1).max(100).optional(),
  nextToken: z.string().optional(),
});
export type ListQuery = z.infer<typeof ListQuery>;

const Sandbox = z.object({
  sandboxID: z.string(),
  templateID: z.string(),
  alias: z.string().optional(),
  clientID: z.string(),
  envdVersion: z.string(),
  envdAccessToken: z.string().nullable(),
  trafficAccessToken: z.string().nullable(),
  domain: z.string().nullable(),
});
export const SandboxResponse = Sandbox;

export const ListedSandbox = z.object({
  sandboxID: z.string(),
  templateID: z.string(),
  alias: z.string().optional(),
  clientID: z.string(),
  cpuCount: z.number().int(),
  memoryMB: z.number().int(),
  diskSizeMB: z.number().int(),
  startedAt: z.string(),
  endAt: z.string(),
  state: z.enum(E2B_STATES),
  envdVersion: z.string(),
  metadata: StringMap,
  volumeMounts: z.array(z.object({ name: z.string(), path: z.string() })),
});

export const SandboxDetail = ListedSandbox.extend({
  domain: z.string().nullable(),
  envdAccessToken: z.string().nullable(),
  allowInternetAccess: z.boolean(),
  lifecycle: z.object({ onTimeout: z.enum(["pause", "kill"]), autoResume: z.boolean() }),
});

export const MetricsQuery = z.object({
  start: z.coerce.number().int().optional(),
  end: z.coerce.number().int().optional(),
});

/** SandboxMetric: Python requires every field. */
export const SandboxMetric = z.object({
  timestamp: z.string(),
  timestampUnix: z.number().int(),
  cpuCount: z.number().int(),
  cpuUsedPct: z.number(),
  memUsed: z.number().int(),
  memTotal: z.number().int(),
  memCache: z.number().int(),
  diskUsed: z.number().int(),
  diskTotal: z.number().int(),
});

export const SnapshotBody = optionalBody(
  z.looseObject({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/)
      .optional(),
  }),
);
export const SnapshotInfo = z.object({ snapshotID: z.string(), names: z.array(z.string()) });
export const SnapshotQuery = z.object({
  sandboxID: z.string().optional(),
  name: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(100).optional(),
  nextToken: z.string().optional(),
});
export const ForkBody = optionalBody(
  z.looseObject({ timeout: z.number().int().min(1).optional(), count: z.number().int().min(1).max(20).optional() }),
);

const LogLimit = z.coerce.number().int().min(0).max(MAX_LOG_LIMIT).default(DEFAULT_LOG_LIMIT);
const Millis = z.coerce.number().int().min(0);

/** v1 logs: from `start` (ms, default: all), oldest first. */
export const LogsQuery = z.object({ start: Millis.optional(), limit: LogLimit });
/** v2 logs: from `cursor` (ms) forward, or back from it (default now), newest first. */
export const LogsV2Query = z.object({
  cursor: Millis.optional(),
  direction: z.enum(["forward", "backward"]).default("forward"),
  level: z.enum(LOG_LEVELS).optional(),
  limit: LogLimit,
  search: z.string().optional(),
});

/** SandboxLogEntry: `fields` holds at least `stream` (stdout or stderr). */
export const SandboxLogEntry = z.object({
  timestamp: z.string(),
  level: z.enum(LOG_LEVELS),
  message: z.string(),
  fields: StringMap,
});
/** v1's SandboxLogs: each line raw (`logs`) and as an entry (`logEntries`). */
export const SandboxLogs = z.object({
  logs: z.array(z.object({ timestamp: z.string(), line: z.string() })),
  logEntries: z.array(SandboxLogEntry),
});
export const SandboxLogsV2 = z.object({ logs: z.array(SandboxLogEntry) });
