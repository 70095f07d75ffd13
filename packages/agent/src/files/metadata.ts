import { errnoOf } from "./errors.js";

/**
 * fs-xattr, loaded on first use: a native addon that a sandbox which never reads or writes
 * metadata need not load (a dlopen and a module at every agent start otherwise).
 */
let xattr: Promise<typeof import("fs-xattr")> | undefined;
function loadXattr(): Promise<typeof import("fs-xattr")> {
  xattr ??= import("fs-xattr").catch((err: unknown) => {
    xattr = undefined;
    throw err;
  });
  return xattr;
}

/** The xattr namespace that holds the user metadata of a file (envd's). */
export const METADATA_XATTR_PREFIX = "user.e2b.";

/** Errnos that mean "this filesystem (or file type) takes no user xattrs". */
const UNSUPPORTED = new Set(["ENOTSUP", "EOPNOTSUPP", "EPERM", "EACCES", "ENOSYS"]);

/** Reads the `user.e2b.*` xattrs of a path as a metadata map; empty when there are none. */
export async function readMetadata(target: string): Promise<Record<string, string>> {
  const metadata: Record<string, string> = {};
  const { getAttribute, listAttributes } = await loadXattr();
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
  const entries = Object.entries(metadata);
  if (entries.length === 0) return true;
  const { setAttribute } = await loadXattr();
  for (const [key, value] of entries) {
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
