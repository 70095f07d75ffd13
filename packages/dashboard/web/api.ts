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

export type SandboxEvent =
  | { type: "snapshot"; sandboxes: Sandbox[] }
  | { type: "changed"; sandbox: Sandbox }
  | { type: "removed"; sandboxID: string };

/**
 * Follows the server-sent stream of the team's sandboxes with fetch (EventSource cannot
 * send headers); reconnects after a pause when the stream drops. Returns the stop.
 */
export function followSandboxes(onEvent: (e: SandboxEvent) => void, onState: (live: boolean) => void): () => void {
  const abort = new AbortController();
  const run = async () => {
    while (!abort.signal.aborted) {
      try {
        const res = await fetch("/dashboard/api/events", {
          headers: { "x-api-key": storedKey() ?? "" },
          signal: abort.signal,
        });
        if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
        onState(true);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end = buffer.indexOf("\n\n");
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block
              .split("\n")
              .filter((l) => l.startsWith("data: "))
              .map((l) => l.slice(6))
              .join("\n");
            if (data) onEvent(JSON.parse(data) as SandboxEvent);
            end = buffer.indexOf("\n\n");
          }
        }
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
