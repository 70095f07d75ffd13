import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { probeBwrap, removeHome } from "@tether/host";

export const TETHER = fileURLToPath(new URL("../../../bin/tether.js", import.meta.url));
const run = promisify(execFile);

/** Bundles are shared with the host tests (one directory per content hash), never rebuilt per file. */
const SHARED_BUNDLE_ROOT = path.join(os.tmpdir(), "tether-test-bundles");

export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface TetherOptions {
  input?: string | Buffer;
  env?: Record<string, string>;
  onStdout?: (text: string, kill: (s: NodeJS.Signals) => void) => void;
  /** Killed (SIGKILL) if still running after this long: for a command that must not hang. */
  timeoutMs?: number;
}

/** Runs the real `tether` bin as a child process (env over ours), collecting what it printed. */
export function runTether(args: string[], options: TetherOptions = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TETHER, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (t: string) => {
      stdout += t;
      options.onStdout?.(stdout, (s) => child.kill(s));
    });
    child.stderr.setEncoding("utf8").on("data", (t: string) => {
      stderr += t;
    });
    const timer =
      options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(options.input ?? "");
  });
}

/**
 * A scratch TETHER_HOME for one test file and a label value unique to it: every sandbox a
 * test creates carries `tether-test.cli=<run>`, so cleanup removes ours and nothing else.
 */
export class CliHome {
  readonly run = randomUUID();
  readonly label = `tether-test.cli=${this.run}`;
  readonly home: string;

  constructor() {
    this.home = mkdtempSync(path.join(os.tmpdir(), "tether-cli-home-"));
    mkdirSync(SHARED_BUNDLE_ROOT, { recursive: true });
    symlinkSync(SHARED_BUNDLE_ROOT, path.join(this.home, "bundle"));
  }

  /** Runs the real `tether` bin with this home. */
  tether(args: string[], options: TetherOptions = {}): Promise<Outcome> {
    return runTether(args, { ...options, env: { TETHER_HOME: this.home, ...options.env } });
  }

  /** `tether create [flags] IMAGE [-- command]` with this file's label; the new id. */
  async create(image: string, ...args: string[]): Promise<string> {
    const dash = args.indexOf("--");
    const [flags, command] = dash === -1 ? [args, []] : [args.slice(0, dash), args.slice(dash)];
    const r = await this.tether(["create", "--label", this.label, ...flags, image, ...command]);
    if (r.code !== 0) throw new Error(`tether create ${image} failed (${r.code}): ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Container ids carrying this file's label, as the engine lists them. */
  async containers(): Promise<string[]> {
    const { stdout } = await run("docker", ["ps", "-aq", "--filter", `label=${this.label}`]);
    return stdout.split("\n").filter(Boolean);
  }

  /** Directories under $TETHER_HOME/sandboxes. */
  sandboxDirs(): string[] {
    try {
      return readdirSync(path.join(this.home, "sandboxes"));
    } catch {
      return [];
    }
  }

  /** Removes this file's containers (only those) and the scratch home. */
  async cleanup(): Promise<void> {
    const ids = await this.containers().catch(() => []);
    if (ids.length > 0) await run("docker", ["rm", "-f", ...ids]).catch(() => {});
    await removeHome(this.home);
  }
}

/** `docker ARGS`, stdout. */
export async function docker(...args: string[]): Promise<string> {
  return (await run("docker", args)).stdout;
}

/**
 * Why bwrap-backed CLI tests cannot run, or undefined when they can. In CI (CI=true)
 * bubblewrap must work: this throws instead of giving a reason to skip.
 */
export async function bwrapSkipReason(): Promise<string | undefined> {
  const probe = await probeBwrap();
  if (probe.ok) return undefined;
  if (process.env.CI === "true") throw new Error(`CI needs bubblewrap for these tests: ${probe.reason}`);
  console.log(`# skipping bwrap-backed CLI tests: ${probe.reason}`);
  return probe.reason;
}

/**
 * Why Docker-backed CLI tests cannot run, or undefined when they can. In CI (CI=true)
 * Docker must be there: this throws instead of giving a reason to skip.
 */
export async function dockerSkipReason(images: readonly string[], runtime?: string): Promise<string | undefined> {
  let reason: string | undefined;
  try {
    const runtimes = await docker("info", "--format", "{{json .Runtimes}}");
    const missing: string[] = [];
    for (const image of images) {
      if (!(await docker("image", "inspect", image).catch(() => undefined))) missing.push(image);
    }
    if (missing.length > 0) reason = `test images ${missing.join(", ")} are missing: run bash scripts/test-images.sh`;
    else if (runtime && !Object.keys(JSON.parse(runtimes)).includes(runtime)) {
      reason = `the engine has no ${runtime} runtime (apt-get install runsc, then bash scripts/start-dockerd.sh)`;
    }
  } catch (err) {
    reason = `Docker is not usable (start it with bash scripts/start-dockerd.sh): ${(err as Error).message.split("\n")[0]}`;
  }
  if (reason && process.env.CI === "true") throw new Error(`CI needs Docker for these tests: ${reason}`);
  if (reason) console.log(`# skipping Docker-backed CLI tests: ${reason}`);
  return reason;
}
