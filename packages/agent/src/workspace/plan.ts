import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type { InitRequest } from "@tether/protocol/workspace";
import type { UnixUser } from "../auth/users.js";

/** One repository to clone, with its target resolved to an absolute path. */
export interface RepositoryPlan {
  url: string;
  dir: string;
  branch?: string;
}

/** A validated Init request: everything the steps need, nothing left to check. */
export interface InitPlan {
  repositories: RepositoryPlan[];
  gitUserName?: string;
  gitUserEmail?: string;
  sshKey: boolean;
  gpgKey: boolean;
}

/**
 * Validates an Init request and resolves clone targets against `base` (the agent's
 * default workdir, else the user's home). Bad input changes nothing: it fails here.
 */
export function planInit(req: InitRequest, user: UnixUser, base: string | undefined): InitPlan {
  const root = path.resolve(user.home, base || user.home);
  const repositories = req.repositories.map((repo, i): RepositoryPlan => {
    const field = `repositories[${i}]`;
    const url = repo.url.trim();
    if (!url) throw invalid(`${field}.url is empty`);
    rejectControl(`${field}.url`, url);
    if (url.startsWith("-")) throw invalid(`${field}.url ${JSON.stringify(url)} looks like an option`);
    if (repo.dir) rejectControl(`${field}.dir`, repo.dir);
    if (repo.branch) {
      rejectControl(`${field}.branch`, repo.branch);
      if (repo.branch.startsWith("-"))
        throw invalid(`${field}.branch ${JSON.stringify(repo.branch)} looks like an option`);
    }
    const name = repo.dir || defaultDirName(url);
    if (!name) throw invalid(`${field}: cannot derive a directory from ${JSON.stringify(url)}; give dir`);
    return { url, dir: path.resolve(root, name), branch: repo.branch || undefined };
  });
  const seen = new Set<string>();
  for (const repo of repositories) {
    if (seen.has(repo.dir)) throw invalid(`two repositories would be cloned into ${repo.dir}`);
    seen.add(repo.dir);
  }
  const gitUserName = req.gitUserName.trim() || undefined;
  const gitUserEmail = req.gitUserEmail.trim() || undefined;
  if (gitUserName) rejectControl("git_user_name", gitUserName);
  if (gitUserEmail) {
    rejectControl("git_user_email", gitUserEmail);
    if (/[<>\s]/.test(gitUserEmail)) throw invalid(`git_user_email ${JSON.stringify(gitUserEmail)} is not an address`);
  }
  if (gitUserName && /[<>]/.test(gitUserName)) throw invalid("git_user_name must not contain < or >");
  return { repositories, gitUserName, gitUserEmail, sshKey: req.sshKey ?? true, gpgKey: req.gpgKey ?? true };
}

/** What `git clone URL` would name the directory: the last path element without ".git". */
export function defaultDirName(url: string): string {
  const trimmed = url
    .replace(/[/\\]+$/, "")
    .replace(/\.git$/, "")
    .replace(/[/\\]+$/, "");
  const last = trimmed.split(/[/:\\]/).pop() ?? "";
  return last === "." || last === ".." ? "" : last;
}

function rejectControl(field: string, value: string): void {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we reject
  if (/[\x00-\x1f\x7f]/.test(value)) throw invalid(`${field} contains a control character`);
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
