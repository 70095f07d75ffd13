import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";

/** The lock file under a bundle root, holding its builder's pid. */
export const BUILD_LOCK_FILE = ".build.lock";
/** A lock file with no pid in it this long after it was made belongs to a builder that died making it. */
const EMPTY_LOCK_STALE_MS = 60_000;
const POLL_MS = 100;

/**
 * Runs `build` holding the root's build lock: one process at a time builds under a root.
 * Ten `tether create` started at once in a fresh TETHER_HOME each built the same bundle
 * (node runtime fetched and unpacked, esbuild, the compile cache, 130 MB copied), all ten
 * sharing the machine, so none had a bundle for minutes; now one builds and the others
 * find its bundle when they get the lock. A lock whose pid is no longer alive is taken
 * over (its builder was killed). Two waiters taking over one stale lock at the same
 * moment may both build, as before: the bundle is written aside and renamed into place.
 */
export async function withBuildLock<T>(root: string, build: () => Promise<T>): Promise<T> {
  await mkdir(root, { recursive: true });
  const file = path.join(root, BUILD_LOCK_FILE);
  for (;;) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: "wx", mode: 0o644 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    if (await isStale(file)) {
      await rm(file, { force: true });
      continue;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  try {
    return await build();
  } finally {
    await rm(file, { force: true });
  }
}

async function isStale(file: string): Promise<boolean> {
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined) return false; // released meanwhile: try again
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) {
    const info = await stat(file).catch(() => undefined);
    return info !== undefined && Date.now() - info.mtimeMs > EMPTY_LOCK_STALE_MS;
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}
