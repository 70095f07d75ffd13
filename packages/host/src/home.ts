import os from "node:os";
import path from "node:path";

/**
 * Tether's data directory: `$TETHER_HOME`, else `$XDG_DATA_HOME/tether`, else
 * `~/.local/share/tether`. Sandbox directories (and later the registry) live here.
 */
export function tetherHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TETHER_HOME) return path.resolve(env.TETHER_HOME);
  return path.join(env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share"), "tether");
}
