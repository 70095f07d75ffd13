import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Whether a `/files` request carries a valid signature of E2B's signed URLs
 * (`uploadUrl()` / `downloadUrl()`): `"v1_" + base64(sha256("path:read|write:user:token
 * [:expiration]"))`, padding stripped, in the query's `signature` and
 * `signature_expiration` (unix seconds). The proxy checks it, since it holds the
 * sandbox's token, and then forwards the request with the token, so the agent needs
 * to know nothing of signatures. "absent": no signature to check.
 */
export function checkSignature(
  method: string,
  url: string,
  accessToken: string,
  nowMs = Date.now(),
): "valid" | "invalid" | "absent" {
  const parsed = new URL(url, "http://sandbox");
  const signature = parsed.searchParams.get("signature");
  if (parsed.pathname !== "/files" || signature === null) return "absent";
  const path = parsed.searchParams.get("path") ?? "";
  const user = parsed.searchParams.get("username") ?? "";
  const operation = method === "GET" || method === "HEAD" ? "read" : "write";
  const expiration = parsed.searchParams.get("signature_expiration");
  if (expiration !== null && !(Number(expiration) * 1000 > nowMs)) return "invalid";
  const raw = `${path}:${operation}:${user}:${accessToken}${expiration !== null ? `:${expiration}` : ""}`;
  const expected = Buffer.from(`v1_${createHash("sha256").update(raw).digest("base64").replace(/=+$/, "")}`);
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected) ? "valid" : "invalid";
}
