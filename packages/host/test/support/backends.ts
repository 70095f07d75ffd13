import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { probeBwrap, removeHome } from "../../src/index.js";

/**
 * Why bwrap-backed tests cannot run, or undefined when they can. In CI (CI=true) bubblewrap
 * must work: this throws instead of giving a reason to skip.
 */
export async function bwrapSkipReason(): Promise<string | undefined> {
  const probe = await probeBwrap();
  if (probe.ok) return undefined;
  if (process.env.CI === "true") throw new Error(`CI needs bubblewrap for these tests: ${probe.reason}`);
  console.log(`# skipping bwrap-backed tests: ${probe.reason}`);
  return probe.reason;
}

/** A scratch TETHER_HOME, removed by the returned function. */
export async function scratchHome(prefix = "tether-host-test-"): Promise<{ home: string; remove(): Promise<void> }> {
  const home = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { home, remove: () => removeHome(home) };
}
