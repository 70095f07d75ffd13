import { chown, mkdir } from "node:fs/promises";
import path from "node:path";
import type { UnixUser } from "../auth/users.js";
import type { AgentContext } from "../context.js";
import { fsError } from "./errors.js";

/** Who new files and directories of a request belong to, and whether to chown them. */
export interface FileOwner {
  uid: number;
  gid: number;
  /** True when the agent runs as root on behalf of another user (envd chowns then). */
  chown: boolean;
}

export function ownerFor(ctx: AgentContext, user: UnixUser): FileOwner {
  const self = ctx.users.current;
  return {
    uid: user.uid,
    gid: user.gid,
    chown: ctx.users.isRoot && (user.uid !== self.uid || user.gid !== self.gid),
  };
}

/** Gives a path the request user's ownership, when the agent acts for someone else. */
export async function applyOwner(target: string, owner: FileOwner): Promise<void> {
  if (!owner.chown) return;
  try {
    await chown(target, owner.uid, owner.gid);
  } catch (err) {
    throw fsError(err, "chown", target);
  }
}

/**
 * `mkdir -p` that chowns every directory it created (and none that existed). Returns
 * whether anything was created.
 */
export async function ensureDirs(dir: string, owner: FileOwner): Promise<boolean> {
  let first: string | undefined;
  try {
    first = await mkdir(dir, { recursive: true });
  } catch (err) {
    throw fsError(err, "create directory", dir);
  }
  if (first === undefined) return false;
  if (owner.chown) {
    let current = first;
    await applyOwner(current, owner);
    for (const part of path.relative(first, dir).split(path.sep).filter(Boolean)) {
      current = path.join(current, part);
      await applyOwner(current, owner);
    }
  }
  return true;
}
