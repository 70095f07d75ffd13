import { existsSync, mkdirSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { HomeUnusableError } from "./errors.js";

/**
 * Tether's data directory: `$TETHER_HOME`, else `$XDG_DATA_HOME/tether`, else
 * `~/.local/share/tether`. Sandbox directories and the registry live here.
 */
export function tetherHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TETHER_HOME) return path.resolve(env.TETHER_HOME);
  return path.join(env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share"), "tether");
}

/**
 * Makes `home` and its missing parents (mode 0700), one level at a time, or throws
 * HomeUnusableError saying why not. Not `mkdirSync(..., { recursive: true })`: under /proc,
 * where mkdir answers ENOENT although the parent exists, Node 20's recursive mkdir retries
 * the parent and the child for ever (`TETHER_HOME=/proc/x tether ls` hung).
 */
export function makeHome(home: string): void {
  const missing: string[] = [];
  for (let dir = path.resolve(home); !existsSync(dir); dir = path.dirname(dir)) {
    missing.push(dir);
    if (path.dirname(dir) === dir) break;
  }
  try {
    for (const dir of missing.reverse()) {
      try {
        mkdirSync(dir, { mode: 0o700 });
      } catch (err) {
        // Another tether process made it first.
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
    }
    if (!statSync(home).isDirectory()) throw new HomeUnusableError(home, "it is not a directory");
  } catch (err) {
    if (err instanceof HomeUnusableError) throw err;
    throw new HomeUnusableError(home, (err as Error).message, { cause: err });
  }
}
