import os from "node:os";
import { Code, ConnectError } from "@connectrpc/connect";
import type { UnixUser } from "../auth/users.js";
import type { AgentContext } from "../context.js";
import { childCredentials } from "../process/credentials.js";
import {
  type CloneRetry,
  type CloneTarget,
  cloneWithRetries,
  DEFAULT_CLONE_RETRY,
  ensureGitConfig,
  gitConfigValue,
  inspectTarget,
} from "./git.js";
import { ensureGpgKey } from "./gpg-key.js";
import type { InitLog, InitLogLine } from "./log.js";
import type { InitPlan } from "./plan.js";
import { defaultKeyComment, ensureSshKey } from "./ssh-key.js";
import { type MissingTool, ToolRunner } from "./tools.js";

/** What an Init ends with. */
export interface InitOutcome {
  sshPublicKey: string;
  gpgPublicKey: string;
  gpgFingerprint: string;
  changed: boolean;
}

export interface WorkspaceInitOptions {
  cloneRetry?: CloneRetry;
}

/**
 * Runs workspace inits: keys, git identity, clones, as the request's user. One at a
 * time per user, so two concurrent calls cannot both decide a key is missing.
 */
export class WorkspaceInit {
  private readonly running = new Map<number, Promise<unknown>>();
  private readonly cloneRetry: CloneRetry;

  constructor(
    private readonly ctx: AgentContext,
    options: WorkspaceInitOptions = {},
  ) {
    this.cloneRetry = options.cloneRetry ?? DEFAULT_CLONE_RETRY;
  }

  /** Runs `plan` for `user` once the user's previous init finished; lines go to `onLine`. */
  run(user: UnixUser, plan: InitPlan, onLine: (line: InitLogLine) => void, signal: AbortSignal): Promise<InitOutcome> {
    const previous = this.running.get(user.uid) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => this.runNow(user, plan, onLine, signal));
    this.running.set(user.uid, next);
    const forget = () => {
      if (this.running.get(user.uid) === next) this.running.delete(user.uid);
    };
    next.then(forget, forget);
    return next;
  }

  private async runNow(
    user: UnixUser,
    plan: InitPlan,
    onLine: (line: InitLogLine) => void,
    signal: AbortSignal,
  ): Promise<InitOutcome> {
    let step = "init";
    const log: InitLog = {
      step(title) {
        step = title;
        onLine({ step, text: title, header: true });
      },
      line(text) {
        onLine({ step, text, header: false });
      },
    };
    const tools = new ToolRunner(
      user,
      this.ctx.state,
      await childCredentials(this.ctx.users, user, false),
      user.home,
      signal,
    );

    // Everything that can be checked is checked before anything changes.
    const needGit = plan.repositories.length > 0 || plan.gitUserName || plan.gitUserEmail || plan.gpgKey;
    const gpg = plan.gpgKey ? await this.findGpg(tools) : undefined;
    const wanted: MissingTool[] = [];
    if (needGit) wanted.push({ name: "git", purpose: plan.repositories.length ? "cloning" : "git config" });
    const missing = await tools.missing(wanted);
    if (plan.gpgKey && !gpg) missing.push({ name: "gpg", purpose: "the GPG signing key (or ask for no GPG key)" });
    if (missing.length > 0) {
      throw new ConnectError(
        `the image lacks ${missing.map((t) => `${t.name} (for ${t.purpose})`).join(", ")}: not found in PATH=${tools.path}`,
        Code.FailedPrecondition,
      );
    }
    const git = "git";
    const targets: CloneTarget[] = [];
    for (const repo of plan.repositories) targets.push(await inspectTarget(git, tools, repo));

    let changed = false;
    let sshPublicKey = "";
    if (plan.sshKey) {
      const ssh = await ensureSshKey(user, plan.gitUserEmail ?? defaultKeyComment(user), log);
      sshPublicKey = ssh.publicKey;
      changed ||= ssh.created;
    }

    if (plan.gitUserName || plan.gitUserEmail) {
      log.step("git identity");
      if (plan.gitUserName)
        changed = (await ensureGitConfig(git, tools, "user.name", plan.gitUserName, log)) || changed;
      if (plan.gitUserEmail)
        changed = (await ensureGitConfig(git, tools, "user.email", plan.gitUserEmail, log)) || changed;
    }

    let gpgPublicKey = "";
    let gpgFingerprint = "";
    if (gpg) {
      const name = plan.gitUserName ?? (await gitConfigValue(git, tools, "user.name")) ?? user.name;
      const email =
        plan.gitUserEmail ?? (await gitConfigValue(git, tools, "user.email")) ?? `${user.name}@${os.hostname()}`;
      const preferred = await gitConfigValue(git, tools, "user.signingkey");
      const key = await ensureGpgKey(gpg, tools, `${name} <${email}>`, preferred, log);
      changed ||= key.created;
      gpgPublicKey = key.publicKey;
      gpgFingerprint = key.fingerprint;
      log.step("git commit signing");
      changed = (await ensureGitConfig(git, tools, "user.signingkey", key.fingerprint, log)) || changed;
      changed = (await ensureGitConfig(git, tools, "commit.gpgsign", "true", log)) || changed;
      // git runs "gpg" unless told otherwise; only a gpg2-only image needs telling.
      if (gpg !== "gpg") changed = (await ensureGitConfig(git, tools, "gpg.program", gpg, log)) || changed;
    }

    for (const [i, repo] of plan.repositories.entries()) {
      log.step(`clone ${repo.url} into ${repo.dir}${repo.branch ? ` (branch ${repo.branch})` : ""}`);
      if (targets[i] === "clone") {
        log.line(`${repo.dir} already present (a clone of ${repo.url})`);
        continue;
      }
      await cloneWithRetries(git, tools, repo, this.cloneRetry, log, signal);
      changed = true;
    }

    log.step(changed ? "done" : "done: everything was already present, nothing changed");
    return { sshPublicKey, gpgPublicKey, gpgFingerprint, changed };
  }

  /** gpg, else gpg2 (some images ship only that name). */
  private async findGpg(tools: ToolRunner): Promise<string | undefined> {
    for (const name of ["gpg", "gpg2"]) {
      if ((await tools.missing([{ name, purpose: "" }])).length === 0) return name;
    }
    return undefined;
  }
}
