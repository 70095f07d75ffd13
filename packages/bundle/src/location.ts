import os from "node:os";
import path from "node:path";

/**
 * Where bundles are kept when no directory is given: `$TETHER_HOME/bundle`, else
 * `$XDG_CACHE_HOME/tether/bundle`, else `~/.cache/tether/bundle`; one subdirectory per content hash.
 */
export function defaultBundleRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TETHER_HOME) return path.join(env.TETHER_HOME, "bundle");
  return userBundleRoot(env);
}

/**
 * The user's bundles, whatever TETHER_HOME says: `$XDG_CACHE_HOME/tether/bundle`, else
 * `~/.cache/tether/bundle`. `npm run build` prepares the checkout's bundle there, and a root
 * without it (a fresh TETHER_HOME) links it from there instead of building it again.
 */
export function userBundleRoot(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "tether", "bundle");
}

/** The directory a bundle with this content hash gets under `root`. */
export function bundleDirFor(contentHash: string, root: string = defaultBundleRoot()): string {
  return path.join(root, contentHash.slice(0, 16));
}
