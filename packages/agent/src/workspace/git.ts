import { lstat, readdir } from "node:fs/promises";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type { InitLog } from "./log.js";
import type { RepositoryPlan } from "./plan.js";
import type { ToolRunner } from "./tools.js";

/** Clone attempts per repository, and the wait before the second (doubling after). */
export interface CloneRetry {
  attempts: number;
  backoffMs: number;
}

export const DEFAULT_CLONE_RETRY: CloneRetry = { attempts: 4, backoffMs: 1000 };

/** What a clone target holds before we start. */
export type CloneTarget = "absent" | "clone" | "empty";

/**
 * Checks a clone target before anything changes: absent or an empty directory can be
 * cloned into; an existing clone of the same remote is left alone; anything else is an error.
 */
export async function inspectTarget(git: string, tools: ToolRunner, repo: RepositoryPlan): Promise<CloneTarget> {
  const info = await lstat(repo.dir).catch(() => undefined);
  if (!info) return "absent";
  if (!info.isDirectory()) throw precondition(`${repo.dir} exists and is not a directory`);
  if ((await readdir(repo.dir)).length === 0) return "empty";
  const gitDir = await lstat(path.join(repo.dir, ".git")).catch(() => undefined);
  if (!gitDir) throw precondition(`${repo.dir} exists, is not empty and is not a git clone`);
  const origin = await tools.run([git, "-C", repo.dir, "remote", "get-url", "origin"], undefined, { quiet: true });
  const url = origin.stdout.trim();
  if (origin.exitCode !== 0 || url !== repo.url) {
    throw precondition(`${repo.dir} is a clone of ${url || "a repository without origin"}, not of ${repo.url}`);
  }
  return "clone";
}

/** Clones with bounded retries and doubling backoff; every line git prints goes to the log. */
export async function cloneWithRetries(
  git: string,
  tools: ToolRunner,
  repo: RepositoryPlan,
  retry: CloneRetry,
  log: InitLog,
  signal: AbortSignal,
): Promise<void> {
  const argv = [git, "clone", "--progress"];
  if (repo.branch) argv.push("--branch", repo.branch);
  argv.push("--", repo.url, repo.dir);
  let lines: string[] = [];
  for (let attempt = 1; attempt <= retry.attempts; attempt++) {
    if (attempt > 1) {
      const wait = retry.backoffMs * 2 ** (attempt - 2);
      log.line(`retrying in ${wait} ms (attempt ${attempt} of ${retry.attempts})`);
      await sleep(wait, signal);
    }
    const result = await tools.run(argv, log);
    if (result.exitCode === 0) return;
    lines = result.lines;
    log.line(`git clone exited with ${result.exitCode}`);
  }
  const tail = lines.slice(-10).join("\n");
  throw new ConnectError(
    `cloning ${repo.url} into ${repo.dir} failed after ${retry.attempts} attempt${retry.attempts === 1 ? "" : "s"}; last output:\n${tail}`,
    Code.Aborted,
  );
}

/**
 * Sets `git config --global KEY VALUE` unless it already has that value.
 * Resolves true when it changed something.
 */
export async function ensureGitConfig(
  git: string,
  tools: ToolRunner,
  key: string,
  value: string,
  log: InitLog,
): Promise<boolean> {
  const current = await tools.run([git, "config", "--global", "--get", key], undefined, { quiet: true });
  if (current.exitCode === 0 && current.stdout.replace(/\n$/, "") === value) {
    log.line(`${key} already set to ${value}`);
    return false;
  }
  const set = await tools.run([git, "config", "--global", key, value], log);
  if (set.exitCode !== 0) {
    throw new ConnectError(`git config --global ${key} failed:\n${set.lines.slice(-10).join("\n")}`, Code.Internal);
  }
  log.line(`${key} = ${value}`);
  return true;
}

/** The current value of a global git setting, if any. */
export async function gitConfigValue(git: string, tools: ToolRunner, key: string): Promise<string | undefined> {
  const current = await tools.run([git, "config", "--global", "--get", key], undefined, { quiet: true });
  return current.exitCode === 0 ? current.stdout.trim() || undefined : undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal.removeEventListener("abort", cancelled);
      resolve();
    }
    function cancelled() {
      clearTimeout(timer);
      reject(new ConnectError("init was cancelled", Code.Canceled));
    }
    signal.addEventListener("abort", cancelled, { once: true });
  });
}

function precondition(message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition);
}
