import { readdir, realpath, rename, rm, stat, utimes } from "node:fs/promises";
import path from "node:path";
import { defaultBundleRoot } from "./location.js";
import { readManifest } from "./manifest.js";

/** A build interrupted this long ago is abandoned: its staging directory may go. */
const ABANDONED_BUILD_MS = 3600 * 1000;

export interface PruneBundlesOptions {
  /** The directory of hash-named bundles; default `defaultBundleRoot()`. */
  root?: string;
  /** Bundle directories a sandbox still mounts: never removed, whatever their age. */
  inUse: Iterable<string>;
  /** Unused bundles last used at least this long ago go. */
  olderThanMs: number;
  now?: number;
}

export interface PruneBundlesReport {
  removed: { dir: string; bytes: number }[];
  /** Bundles left where they are, and why. */
  kept: { dir: string; reason: "in use" | "recently used" }[];
}

/**
 * Records that `dir` was just used to start a sandbox (its mtime), so `pruneBundles`
 * leaves it alone for a while even when no container mounts it at that moment.
 */
export async function markBundleUsed(dir: string, now = new Date()): Promise<void> {
  await utimes(dir, now, now);
}

/**
 * Removes the bundles under `root` that no sandbox mounts and nobody used for
 * `olderThanMs`, and the staging directories of builds abandoned an hour ago or more.
 * Every agent version leaves a bundle of about 130 MB behind; nothing else removes them.
 * Only directories that hold a bundle's manifest, under the name `bundleDirFor` gives
 * it, are touched. A bundle is renamed away before it is deleted, so nobody finds half of one.
 */
export async function pruneBundles(options: PruneBundlesOptions): Promise<PruneBundlesReport> {
  const root = await realDir(options.root ?? defaultBundleRoot());
  const now = options.now ?? Date.now();
  // Mounts name bundles by whatever path their creator had (a symlinked home, say).
  const inUse = new Set(await Promise.all([...options.inUse].map(realDir)));
  const report: PruneBundlesReport = { removed: [], kept: [] };
  const names = await readdir(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  for (const name of names.sort()) {
    const dir = path.join(root, name);
    const info = await stat(dir).catch(() => undefined);
    if (!info?.isDirectory()) continue;
    if (/^\.[0-9a-f]{16}\.(partial|old|removing)-/.test(name)) {
      if (now - info.mtimeMs >= ABANDONED_BUILD_MS) await rm(dir, { recursive: true, force: true });
      continue;
    }
    if (!/^[0-9a-f]{16}$/.test(name)) continue;
    const manifest = await readManifest(dir);
    if (!manifest?.contentHash.startsWith(name)) continue;
    if (inUse.has(dir)) {
      report.kept.push({ dir, reason: "in use" });
      continue;
    }
    if (now - info.mtimeMs < options.olderThanMs) {
      report.kept.push({ dir, reason: "recently used" });
      continue;
    }
    const removing = path.join(root, `.${name}.removing-${process.pid}`);
    await rename(dir, removing);
    await rm(removing, { recursive: true, force: true });
    report.removed.push({ dir, bytes: manifest.size });
  }
  return report;
}

async function realDir(dir: string): Promise<string> {
  return realpath(dir).catch(() => path.resolve(dir));
}
