import { lstat } from "node:fs/promises";
import path from "node:path";
import { contentHash, hashFile } from "./hash.js";
import { readManifest } from "./manifest.js";

/**
 * Re-hashes a bundle directory's files from disk and checks them against its manifest.
 * Returns the recomputed content hash; throws naming the first file that differs.
 */
export async function verifyBundle(dir: string): Promise<string> {
  const manifest = await readManifest(dir);
  if (!manifest) throw new Error(`${dir} holds no bundle manifest`);
  const files = [];
  for (const file of manifest.files) {
    const full = path.join(dir, file.path);
    const info = await lstat(full).catch(() => undefined);
    if (!info?.isFile()) throw new Error(`${dir}: ${file.path} is missing or not a regular file`);
    const mode = (info.mode & 0o777).toString(8);
    const { size, sha256 } = await hashFile(full);
    if (sha256 !== file.sha256 || mode !== file.mode) {
      throw new Error(`${dir}: ${file.path} differs from the manifest (mode ${mode}, sha256 ${sha256})`);
    }
    files.push({ path: file.path, mode, size, sha256 });
  }
  const hash = contentHash(files);
  if (hash !== manifest.contentHash)
    throw new Error(`${dir}: content hash ${hash} != manifest ${manifest.contentHash}`);
  return hash;
}
