import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { BundleEntry } from "./entries.js";

/** A file as recorded in a bundle's manifest. */
export interface BundleFile {
  path: string;
  /** Octal mode, e.g. "755". */
  mode: string;
  size: number;
  sha256: string;
}

/** Hashes every entry's bytes. */
export async function describeEntries(entries: readonly BundleEntry[]): Promise<BundleFile[]> {
  const files: BundleFile[] = [];
  for (const entry of entries) {
    const { size, sha256 } = "file" in entry.source ? await hashFile(entry.source.file) : hashBytes(entry.source.data);
    files.push({ path: entry.path, mode: entry.mode.toString(8), size, sha256 });
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * The bundle's content hash: sha256 over one `mode sha256 path` line per file, sorted by path.
 * Two bundles with the same hash have the same files, bytes and modes.
 */
export function contentHash(files: readonly BundleFile[]): string {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const hash = createHash("sha256");
  for (const f of sorted) hash.update(`${f.mode} ${f.sha256} ${f.path}\n`);
  return hash.digest("hex");
}

export async function hashFile(file: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest("hex") };
}

function hashBytes(data: Uint8Array): { size: number; sha256: string } {
  return { size: data.length, sha256: createHash("sha256").update(data).digest("hex") };
}
