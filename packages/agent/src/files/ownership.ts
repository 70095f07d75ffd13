import { mkdirSync } from "node:fs";
import type { UnixUser } from "../auth/users.js";
import type { AgentContext } from "../context.js";
import { fsError } from "./errors.js";

type SpawnAddon = typeof import("@tether/spawn");

/**
 * The rights the file operations of a request run with. A root agent acting for another
 * user takes that user's: its fsuid, fsgid and groups, on the one thread a call runs on,
 * so a link the user planted (`~/out.txt -> /root/secret`) leads only where the user may
 * go, and what it creates belongs to the user without any chown. Otherwise the agent's own.
 */
export interface FileRights {
  /** True when calls run with another user's ids (a root agent acting for someone else). */
  readonly switches: boolean;
  /** Calls `fn`, which may make only synchronous fs calls, with these rights. */
  run<T>(fn: () => T): T;
}

const OWN_RIGHTS: FileRights = { switches: false, run: (fn) => fn() };

let addon: Promise<SpawnAddon> | undefined;

/** The rights of `user`'s file operations; the addon that switches ids loads on the first that needs it. */
export async function rightsFor(ctx: AgentContext, user: UnixUser): Promise<FileRights> {
  const self = ctx.users.current;
  if (!ctx.users.isRoot || (user.uid === self.uid && user.gid === self.gid)) {
    return OWN_RIGHTS;
  }
  addon ??= import("@tether/spawn").then(
    (m) => ((m as { default?: SpawnAddon }).default ?? m) as SpawnAddon,
    (err: Error) => {
      addon = undefined;
      throw new Error(`cannot act with the rights of user "${user.name}": @tether/spawn: ${err.message}`);
    },
  );
  const { withFsIds } = await addon;
  const ids = { uid: user.uid, gid: user.gid, groups: user.groups };
  return { switches: true, run: (fn) => withFsIds(ids, fn) };
}

/**
 * `mkdir -p` with the request's rights (what it creates belongs to whoever it runs as).
 * Returns whether anything was created.
 */
export function ensureDirs(dir: string, rights: FileRights): boolean {
  try {
    return rights.run(() => mkdirSync(dir, { recursive: true })) !== undefined;
  } catch (err) {
    throw fsError(err, "create directory", dir);
  }
}
