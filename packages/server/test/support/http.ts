import http from "node:http";
import type { Duplex } from "node:stream";

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to the server, with whatever headers (a Host of `<port>-<id>.<domain>` included). */
export function request(
  url: string,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const base = new URL(url);
    const req = http.request(
      {
        host: base.hostname,
        port: base.port,
        method: options.method ?? "GET",
        path: options.path ?? "/",
        headers: options.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** An HTTP upgrade through the server; resolves with the switched socket and the 101's headers. */
export function upgrade(
  url: string,
  headers: Record<string, string>,
): Promise<{ socket: Duplex; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const base = new URL(url);
    const req = http.request({
      host: base.hostname,
      port: base.port,
      path: "/",
      headers: { connection: "Upgrade", upgrade: "echo", ...headers },
      agent: false,
    });
    req.on("upgrade", (res, socket) => resolve({ socket, headers: res.headers }));
    req.on("response", (res) => reject(new Error(`no upgrade: HTTP ${res.statusCode}`)));
    req.on("error", reject);
    req.end();
  });
}

/** Polls until `check` returns a value other than undefined, or throws after `ms`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
