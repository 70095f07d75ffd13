/** The API key lives in this tab's session storage and travels only in the X-API-KEY header. */
const KEY = "tether.apiKey";

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}
export function storeKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, key);
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { "x-api-key": storedKey() ?? "" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) {
    const text = await res.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {}
    throw new ApiFailure(res.status, message || res.statusText);
  }
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("content-type") ?? "";
  return (type.includes("json") ? res.json() : res.text()) as Promise<T>;
}

export interface Sandbox {
  sandboxID: string;
  templateID: string;
  state: "running" | "paused";
  hostState: string;
  backend: string;
  image: string;
  startedAt: string;
  endAt: string;
  cpuCount: number;
  memoryMB: number;
  metadata: Record<string, string>;
}

/** A running sandbox's CPU and memory now, as the server samples them for the table. */
export interface SandboxUsage {
  sandboxID: string;
  cpuUsedPct: number;
  cpuCount: number;
  memUsed: number;
  memTotal: number;
  timestamp: string;
}

export type SandboxEvent =
  | { type: "snapshot"; sandboxes: Sandbox[] }
  | { type: "changed"; sandbox: Sandbox }
  | { type: "removed"; sandboxID: string }
  | { type: "usage"; usage: SandboxUsage[] };

/**
 * Reads a server-sent event stream with fetch (EventSource cannot send the key header),
 * calling `onEvent` with each event's name and parsed data; resolves when the stream ends.
 */
export async function readEvents(
  path: string,
  signal: AbortSignal,
  onEvent: (name: string, data: unknown) => void,
  onOpen: () => void = () => {},
): Promise<void> {
  const res = await fetch(path, { headers: { "x-api-key": storedKey() ?? "" }, signal });
  if (!res.ok || !res.body) throw new ApiFailure(res.status, `${path}: ${res.status}`);
  onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const lines = buffer.slice(0, end).split("\n");
      buffer = buffer.slice(end + 2);
      const name = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? "message";
      const data = lines
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("\n");
      if (data) onEvent(name, JSON.parse(data));
      end = buffer.indexOf("\n\n");
    }
  }
}

/** Follows the team's sandboxes' event stream; reconnects after a pause when it drops. Returns the stop. */
export function followSandboxes(onEvent: (e: SandboxEvent) => void, onState: (live: boolean) => void): () => void {
  const abort = new AbortController();
  const run = async () => {
    while (!abort.signal.aborted) {
      try {
        await readEvents(
          "/dashboard/api/events",
          abort.signal,
          (_, data) => onEvent(data as SandboxEvent),
          () => onState(true),
        );
      } catch {
        if (abort.signal.aborted) return;
      }
      onState(false);
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  void run();
  return () => abort.abort();
}
