import { readFile, unlink } from "node:fs/promises";

/**
 * Reads the access token a host handed over in a file, then deletes the file so nothing
 * in the sandbox can read it later. An empty file is an error: an agent meant to require
 * a token must not start without one.
 */
export async function takeAccessTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read the access token file ${path}: ${(err as Error).message}`);
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw new Error(`cannot delete the access token file ${path}: ${err.message}`);
  });
  const token = text.trim();
  if (!token) throw new Error(`the access token file ${path} is empty`);
  return token;
}
