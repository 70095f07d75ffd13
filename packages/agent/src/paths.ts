import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where this package is installed: its sources, bin/ and compiled dist/, for those that bundle
 * the agent (@tether/bundle). A subpath of its own (`@tether/agent/paths`) so that finding the
 * agent does not load it.
 */
export const AGENT_PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** tetherd's executable script in this package. */
export const TETHERD_BIN = path.join(AGENT_PACKAGE_DIR, "bin", "tetherd.js");
