import { readFileSync } from "node:fs";

/**
 * What the agent grants a client before and beside its work: how long a connection may sit
 * without a request, how many connections and polled watchers it keeps, how many streams a
 * client may reset. Defaults suit a sandbox; tests shorten them.
 */
export interface AgentLimits {
  /** A connection must have sent a whole request head within this long of opening. */
  headersTimeoutMs: number;
  /** A connection (or HTTP/2 session) with no request in progress is closed after this long. */
  connectionIdleMs: number;
  /** Connections each listener keeps at once; more are refused (each costs a descriptor). */
  maxConnections: number;
  /** Streams an HTTP/2 client may reset at once, and per second after that (rapid reset). */
  resetBurst: number;
  resetsPerSecond: number;
  /**
   * Whether streams carrying the access token count against the reset limit too. Off: the
   * token's holder may run anything anyway, and the SDK cancels in bursts (see
   * ConnectionGuard). Tests turn it on to have the agent cut a busy client's sessions.
   */
  countTrustedResets: boolean;
  /** A CreateWatcher watcher nobody polled for this long is removed. */
  watcherIdleMs: number;
  /** Polled watchers kept at once; CreateWatcher refuses more. */
  maxPolledWatchers: number;
}

export const DEFAULT_LIMITS: AgentLimits = {
  headersTimeoutMs: 10_000,
  // Above node's HTTP/1 keep-alive (65 s), which says so to clients: they then never send
  // a request on a connection the agent is about to close.
  connectionIdleMs: 70_000,
  maxConnections: defaultMaxConnections(),
  resetBurst: 200,
  resetsPerSecond: 20,
  countTrustedResets: false,
  watcherIdleMs: 10 * 60_000,
  maxPolledWatchers: 64,
};

/**
 * A quarter of the descriptors the agent may open, at most 512: its two listeners then
 * leave half of them for files, pipes and processes (a sandbox often allows 1,024, and a
 * connection past the limit would fail every accept, and with it the agent).
 */
export function defaultMaxConnections(limits = "/proc/self/limits"): number {
  let text = "";
  try {
    text = readFileSync(limits, "utf8");
  } catch {
    return 512;
  }
  const soft = Number(/^Max open files\s+(\d+)/m.exec(text)?.[1] ?? Number.NaN);
  return Number.isNaN(soft) ? 512 : Math.max(16, Math.min(512, Math.floor(soft / 4)));
}
