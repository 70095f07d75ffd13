import { execFile } from "node:child_process";
import { readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { type BuiltBundle, buildBundle, LOADER_NAME } from "../../src/index.js";

const run = promisify(execFile);

/** Test bundles live here, one per content hash, so test files running at once share one build. */
export const TEST_BUNDLE_ROOT = path.join(os.tmpdir(), "tether-test-bundles");

let shared: Promise<BuiltBundle> | undefined;

/** The bundle of the agent as compiled now, built once per test process (reused across processes). */
export function testBundle(): Promise<BuiltBundle> {
  shared ??= buildBundle({ root: TEST_BUNDLE_ROOT }).then(async (bundle) => {
    await pruneOthers(bundle.dir);
    return bundle;
  });
  return shared;
}

/** Removes test bundles of earlier agent builds (older than an hour, so none a running test uses). */
async function pruneOthers(keep: string): Promise<void> {
  for (const name of await readdir(TEST_BUNDLE_ROOT)) {
    const dir = path.join(TEST_BUNDLE_ROOT, name);
    if (dir === keep) continue;
    const info = await stat(dir).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > 3600_000) await rm(dir, { recursive: true, force: true });
  }
}

/** argv that runs the bundle's node on this host through the bundle's loader, as a container would. */
export function hostNodeArgv(dir: string, ...args: string[]): [string, string[]] {
  const lib = path.join(dir, "lib");
  return [path.join(lib, LOADER_NAME), ["--library-path", lib, path.join(dir, "bin", "node"), ...args]];
}

/** Runs the bundle's node on this host; resolves with its stdout. */
export async function runBundledNode(dir: string, args: string[], cwd = dir): Promise<string> {
  const [file, argv] = hostNodeArgv(dir, ...args);
  const { stdout } = await run(file, argv, { cwd, encoding: "utf8", env: { PATH: process.env.PATH } });
  return stdout;
}
