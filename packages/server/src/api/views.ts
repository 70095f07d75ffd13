import os from "node:os";
import type { SandboxInfo, SandboxState, SandboxStats } from "@tether/host";
import { DEFAULT_TEAM } from "../auth/keys.js";
import type { SandboxLogRecord } from "./logs.js";
import type { E2bState } from "./schemas.js";

/**
 * The envd version tetherd answers as: the newest feature level the e2b SDK gates on
 * (>= 0.6.4 switches every SDK feature on; below 0.4.0 it would send user "user").
 */
export const ENVD_VERSION = "0.6.4";
/** E2B's deprecated `clientID`: required by the SDKs, meaningless here. */
export const CLIENT_ID = "tether";
/** RFC 3339's largest instant Python parses: the end of a sandbox that never expires. */
const NEVER = "9999-12-31T23:59:59Z";

/** What the server records with each sandbox it makes (in the registry record's metadata, under `e2b`). */
export interface ServerFacts {
  team: string;
  templateID: string;
  /** The user's metadata, as E2B clients set and filter it. */
  metadata: Record<string, string>;
  autoPause: boolean;
  cpuCount: number;
  memoryMB: number;
  allowInternetAccess: boolean;
  /** Set when the sandbox's ports are not public: the proxy wants it in `e2b-traffic-access-token`. */
  trafficAccessToken?: string;
}

/** CPUs a sandbox without a CPU limit may use. */
export function hostCpus(): number {
  return os.cpus().length;
}

/** MiB a sandbox without a memory limit may use. */
export function hostMemoryMB(): number {
  return Math.floor(os.totalmem() / 2 ** 20);
}

/** The server's facts of a sandbox; one made by the CLI belongs to the default team. */
export function factsOf(info: SandboxInfo): ServerFacts {
  const facts = (info.metadata?.e2b ?? {}) as Partial<ServerFacts>;
  return {
    team: facts.team ?? DEFAULT_TEAM,
    templateID: facts.templateID ?? info.image,
    metadata: facts.metadata ?? {},
    autoPause: facts.autoPause ?? false,
    cpuCount: facts.cpuCount ?? hostCpus(),
    memoryMB: facts.memoryMB ?? hostMemoryMB(),
    allowInternetAccess: facts.allowInternetAccess ?? false,
    ...(facts.trafficAccessToken ? { trafficAccessToken: facts.trafficAccessToken } : {}),
  };
}

/** E2B's state of each host state E2B's API shows: a stopped sandbox (paused without memory) is `paused` too. */
const E2B_STATE_OF: Partial<Record<SandboxState, E2bState>> = {
  running: "running",
  paused: "paused",
  stopped: "paused",
};

/** The host states of the sandboxes E2B's API shows. */
export const E2B_VISIBLE_STATES = Object.keys(E2B_STATE_OF) as SandboxState[];

/** E2B's state of a sandbox, or undefined when E2B's API does not show it. */
export function e2bState(info: SandboxInfo): E2bState | undefined {
  return E2B_STATE_OF[info.state];
}

export interface ViewContext {
  domain?: string;
}

/** The `Sandbox` schema: what create and connect answer. */
export function sandboxView(info: SandboxInfo, ctx: ViewContext) {
  const facts = factsOf(info);
  return {
    sandboxID: info.id,
    templateID: facts.templateID,
    alias: facts.templateID,
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    envdAccessToken: info.endpoint?.accessToken ?? null,
    trafficAccessToken: facts.trafficAccessToken ?? null,
    domain: ctx.domain ?? null,
  };
}

/** The `ListedSandbox` schema. */
export function listedView(info: SandboxInfo) {
  const facts = factsOf(info);
  return {
    sandboxID: info.id,
    templateID: facts.templateID,
    alias: facts.templateID,
    clientID: CLIENT_ID,
    cpuCount: facts.cpuCount,
    memoryMB: facts.memoryMB,
    // No disk quota is set on sandboxes; 0 says so.
    diskSizeMB: 0,
    startedAt: info.createdAt.toISOString(),
    endAt: info.expiresAt?.toISOString() ?? NEVER,
    state: e2bState(info) ?? "paused",
    envdVersion: ENVD_VERSION,
    metadata: facts.metadata,
    volumeMounts: [],
  };
}

/** The `SandboxDetail` schema: what getInfo answers. */
export function detailView(info: SandboxInfo, ctx: ViewContext) {
  const facts = factsOf(info);
  return {
    ...listedView(info),
    domain: ctx.domain ?? null,
    envdAccessToken: info.endpoint?.accessToken ?? null,
    allowInternetAccess: facts.allowInternetAccess,
    lifecycle: { onTimeout: facts.autoPause ? ("pause" as const) : ("kill" as const), autoResume: false },
  };
}

/** The `SandboxMetric` schema. */
export function metricView(stats: SandboxStats) {
  return {
    timestamp: stats.at.toISOString(),
    timestampUnix: Math.floor(stats.at.getTime() / 1000),
    cpuCount: Math.max(1, Math.round(stats.cpuCount)),
    cpuUsedPct: Math.round(stats.cpuUsedPct * 100) / 100,
    memUsed: stats.memUsed,
    memTotal: stats.memTotal,
    memCache: stats.memCache,
    diskUsed: stats.diskUsed,
    // Sandboxes get no disk quota: 0 says so.
    diskTotal: 0,
  };
}

/** The `SandboxLogEntry` schema. */
export function logEntryView(record: SandboxLogRecord) {
  return { timestamp: record.at.toISOString(), level: record.level, message: record.message, fields: record.fields };
}
