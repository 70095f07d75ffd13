import type { IncomingHttpHeaders } from "node:http";

/** The port tetherd (envd) listens on inside a sandbox. */
export const AGENT_PORT = 49983;

/** Where a proxied request goes. */
export interface ProxyTarget {
  sandboxId: string;
  port: number;
}

const ID = /^[a-z0-9]{1,64}$/;

function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Which sandbox a request is for, or undefined for the API: the headers
 * `E2b-Sandbox-Id` + `E2b-Sandbox-Port` (what the SDK sends with E2B_SANDBOX_URL), else a
 * Host of `<port>-<id>.<domain>` (getHost, signed URLs). Anything else is the API's.
 */
export function proxyTarget(headers: IncomingHttpHeaders, domain: string | undefined): ProxyTarget | undefined {
  const id = one(headers["e2b-sandbox-id"]);
  if (id !== undefined) {
    const port = Number(one(headers["e2b-sandbox-port"]) ?? AGENT_PORT);
    return { sandboxId: id, port };
  }
  if (!domain) return undefined;
  const host = (one(headers.host) ?? "").toLowerCase().replace(/:\d+$/, "");
  const suffix = `.${domain.toLowerCase()}`;
  if (!host.endsWith(suffix)) return undefined;
  const m = /^(\d{1,5})-([a-z0-9]+)$/.exec(host.slice(0, -suffix.length));
  if (!m) return undefined;
  return { sandboxId: m[2], port: Number(m[1]) };
}

/** Whether the target names a sandbox and port that can exist at all. */
export function validTarget(target: ProxyTarget): boolean {
  return ID.test(target.sandboxId) && Number.isInteger(target.port) && target.port >= 1 && target.port <= 65535;
}
