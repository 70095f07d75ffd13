import { getAttribute, listAttributes, setAttribute } from "fs-xattr";
import { errnoOf } from "./errors.js";

/** The xattr namespace that holds the user metadata of a file (envd's). */
export const METADATA_XATTR_PREFIX = "user.e2b.";

/** Errnos that mean "this filesystem (or file type) takes no user xattrs". */
const UNSUPPORTED = new Set(["ENOTSUP", "EOPNOTSUPP", "EPERM", "EACCES", "ENOSYS"]);

/** Reads the `user.e2b.*` xattrs of a path as a metadata map; empty when there are none. */
export async function readMetadata(target: string): Promise<Record<string, string>> {
  const metadata: Record<string, string> = {};
  let names: string[];
  try {
    names = await listAttributes(target);
  } catch {
    return metadata;
  }
  for (const name of names) {
    if (!name.startsWith(METADATA_XATTR_PREFIX)) continue;
    try {
      metadata[name.slice(METADATA_XATTR_PREFIX.length)] = (await getAttribute(target, name)).toString("utf8");
    } catch {
      // Removed between list and get: skip it.
    }
  }
  return metadata;
}

/**
 * Stores metadata as `user.e2b.<key>` xattrs. Returns false, changing nothing more,
 * when the filesystem refuses user xattrs (tmpfs without xattr support, overlay, ...):
 * the file itself still counts as written.
 */
export async function writeMetadata(target: string, metadata: Record<string, string>): Promise<boolean> {
  for (const [key, value] of Object.entries(metadata)) {
    try {
      await setAttribute(target, METADATA_XATTR_PREFIX + key, value);
    } catch (err) {
      if (UNSUPPORTED.has(errnoOf(err) ?? "")) return false;
      throw err;
    }
  }
  return true;
}

/** The metadata of an upload: `X-Metadata-<key>: value` headers, keys lowercased (envd). */
export function metadataFromHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (!lower.startsWith("x-metadata-") || value === undefined) continue;
    const key = lower.slice("x-metadata-".length);
    if (!key) continue;
    metadata[key] = Array.isArray(value) ? value[0] : value;
  }
  return metadata;
}
