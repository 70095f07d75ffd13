import { readFileSync, unlinkSync } from "node:fs";

/**
 * Reads the access token a host handed over in a file, then deletes the file so nothing
 * in the sandbox can read it later. An empty file is an error: an agent meant to require
 * a token must not start without one. Synchronous: it runs once, at start, where each
 * thread-pool round trip would only delay the agent's readiness.
 */
export function takeAccessTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read the access token file ${path}: ${(err as Error).message}`);
  }
  try {
    unlinkSync(path);
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    if (code !== "ENOENT") throw new Error(`cannot delete the access token file ${path}: ${message}`);
  }
  const token = text.trim();
  if (!token) throw new Error(`the access token file ${path} is empty`);
  return token;
}
