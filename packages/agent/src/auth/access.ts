import { timingSafeEqual } from "node:crypto";
import { ACCESS_TOKEN_HEADER } from "@tether/protocol/constants";
import type { AgentState } from "../state.js";

/** Header access that works for node's IncomingHttpHeaders and fetch-style Headers. */
export type HeaderSource = Headers | Record<string, string | string[] | undefined>;

export function headerValue(headers: HeaderSource, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** True when the request may proceed: no token is set yet, or it carries the right one. */
export function isAuthorized(state: AgentState, headers: HeaderSource): boolean {
  const expected = state.accessToken;
  if (expected === undefined) return true;
  return tokensEqual(headerValue(headers, ACCESS_TOKEN_HEADER), expected);
}

/** Constant-time comparison, so the token cannot be guessed byte by byte from timings. */
export function tokensEqual(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
