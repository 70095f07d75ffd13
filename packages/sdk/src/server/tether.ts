import {
  AuthenticationError,
  InvalidArgumentError,
  RateLimitError,
  SandboxNotFoundError,
  ServerError,
  TetherError,
} from "../errors.js";

/** Where tether serve is and who we are there. */
export interface TetherOptions {
  /** The server's URL; default `TETHER_SERVER`. */
  apiUrl?: string;
  /** An API key of `tether keys create`; default `TETHER_API_KEY`. */
  apiKey?: string;
  /** Give up on one API request after this long; default 5 min (a create waits in its team's line). */
  requestTimeoutMs?: number;
  /** How often a create refused with 429 is tried again after its Retry-After; default 10. */
  rateLimitRetries?: number;
}

/** An API answer: the body (parsed JSON, or undefined when empty) and headers. */
export interface ApiAnswer {
  status: number;
  body: unknown;
  headers: Headers;
}

/**
 * A client for tether serve's control-plane API (E2B's REST API): one per server and key.
 * `Sandbox` uses it; it is exported for callers that want one shared client.
 */
export class Tether {
  readonly apiUrl: string;
  readonly requestTimeoutMs: number;
  readonly rateLimitRetries: number;
  private readonly apiKey: string;

  constructor(options: TetherOptions = {}) {
    const apiUrl = options.apiUrl ?? process.env.TETHER_SERVER;
    const apiKey = options.apiKey ?? process.env.TETHER_API_KEY;
    if (!apiUrl) throw new InvalidArgumentError("no server: pass apiUrl or set TETHER_SERVER");
    if (!apiKey) throw new AuthenticationError("no API key: pass apiKey or set TETHER_API_KEY");
    this.apiUrl = apiUrl.endsWith("/") ? apiUrl.slice(0, -1) : apiUrl;
    this.apiKey = apiKey;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 300_000;
    this.rateLimitRetries = options.rateLimitRetries ?? 10;
  }

  /**
   * One API request; a 4xx/5xx becomes a typed error (404 naming `sandboxId`:
   * SandboxNotFoundError; 401/403: AuthenticationError; 429: RateLimitError).
   */
  async request(
    method: string,
    path: string,
    options: { body?: unknown; sandboxId?: string } = {},
  ): Promise<ApiAnswer> {
    const headers: Record<string, string> = { "x-api-key": this.apiKey };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(`${this.apiUrl}${path}`, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
    } catch (err) {
      throw new ServerError(`${method} ${this.apiUrl}${path} failed: ${(err as Error).message}`, {
        status: 0,
        cause: err,
      });
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text === "" ? undefined : JSON.parse(text);
    } catch {
      body = text;
    }
    if (response.ok) return { status: response.status, body, headers: response.headers };
    const said = typeof body === "object" && body !== null && "message" in body ? String(body.message) : text;
    const message = `${method} ${path}: ${response.status} ${said}`;
    const status = response.status;
    if (status === 401 || status === 403) throw new AuthenticationError(message);
    if (status === 404 && options.sandboxId !== undefined) {
      throw new SandboxNotFoundError(message, { sandboxId: options.sandboxId });
    }
    if (status === 429) {
      const seconds = Number(response.headers.get("retry-after"));
      throw new RateLimitError(message, {
        retryAfterMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 1000,
      });
    }
    throw new ServerError(message, { status });
  }

  /** `request`, sent again after each 429's Retry-After, up to `rateLimitRetries` times. */
  async requestPatiently(
    method: string,
    path: string,
    options: { body?: unknown; sandboxId?: string } = {},
  ): Promise<ApiAnswer> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request(method, path, options);
      } catch (err) {
        if (!(err instanceof RateLimitError) || attempt >= this.rateLimitRetries) throw err;
        await new Promise((resolve) => setTimeout(resolve, err.retryAfterMs));
      }
    }
  }
}

/** Reads a field of an API answer, or says the server's answer is not what this SDK understands. */
export function field<T>(
  body: unknown,
  name: string,
  kind: "string" | "number" | "boolean" | "object",
  optional?: false,
): T;
export function field<T>(
  body: unknown,
  name: string,
  kind: "string" | "number" | "boolean" | "object",
  optional: true,
): T | undefined;
export function field<T>(
  body: unknown,
  name: string,
  kind: "string" | "number" | "boolean" | "object",
  optional = false,
): T | undefined {
  const value = typeof body === "object" && body !== null ? (body as Record<string, unknown>)[name] : undefined;
  if ((value === undefined || value === null) && optional) return undefined;
  if (typeof value !== kind || value === null) {
    throw new TetherError(`the server's answer has no ${kind} ${name}: ${JSON.stringify(body)?.slice(0, 200)}`);
  }
  return value as T;
}
