import type { UnixUser, UserDirectory } from "../auth/users.js";
import { execAsArgs, execAsHelper } from "./spawner.js";

/** How a child becomes the user a request acts as. */
export type Credentials =
  /** The child runs as the agent's own account. */
  | { kind: "inherit" }
  /** The spawner sets the supplementary groups, gid and uid in the child before exec. */
  | { kind: "ids"; uid: number; gid: number; groups: number[] }
  /** Our static `tether-exec-as` sets groups, gid and uid, then execs the command. */
  | { kind: "exec-as"; file: string; args: string[] };

/**
 * Decides how each child switches to its user. Pipe children are spawned by our addon,
 * which sets the groups, gid and uid itself. node-pty forks PTY children on its own and
 * sets only uid and gid there (the agent's root groups would stay), so a PTY child is
 * exec'd through tether-exec-as, which we ship: no setpriv or su from the image (busybox's
 * setpriv has no --reuid; a distroless image has neither).
 */
export async function childCredentials(users: UserDirectory, user: UnixUser, pty: boolean): Promise<Credentials> {
  const self = users.current;
  if (!users.isRoot || (user.uid === self.uid && user.gid === self.gid)) return { kind: "inherit" };
  const groups = [...new Set([user.gid, ...user.groups])];
  if (!pty) return { kind: "ids", uid: user.uid, gid: user.gid, groups };
  return { kind: "exec-as", file: await execAsHelper(), args: execAsArgs({ uid: user.uid, gid: user.gid, groups }) };
}
