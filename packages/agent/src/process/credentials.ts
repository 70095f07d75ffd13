import { access, constants } from "node:fs/promises";
import type { UnixUser, UserDirectory } from "../auth/users.js";

/** How a child becomes the user a request acts as. */
export type Credentials =
  /** The child runs as the agent's own account. */
  | { kind: "inherit" }
  /** libuv (or node-pty) sets uid and gid in the child before exec. */
  | { kind: "ids"; uid: number; gid: number }
  /** `setpriv` sets uid, gid and the supplementary groups, then execs the command. */
  | { kind: "setpriv"; file: string; args: string[] };

const SETPRIV_PATHS = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv", "/sbin/setpriv"];

/**
 * Decides how each child switches to its user. libuv calls setgroups(0) before setuid,
 * so a plain uid/gid spawn loses the user's supplementary groups; node-pty does not call
 * setgroups at all, so a PTY child would keep the agent's (root's) groups. When the
 * image has util-linux's setpriv, children that need the groups right are exec'd
 * through it (one extra exec, only when switching users); without it we fall back to
 * uid/gid and those groups are lost (or, for a PTY, root's are kept). `pty` children always
 * need the groups reset.
 */
export async function childCredentials(users: UserDirectory, user: UnixUser, pty: boolean): Promise<Credentials> {
  const self = users.current;
  if (!users.isRoot || (user.uid === self.uid && user.gid === self.gid)) return { kind: "inherit" };
  const onlyPrimaryGroup = user.groups.every((g) => g === user.gid);
  const setpriv = pty || !onlyPrimaryGroup ? await findSetpriv() : undefined;
  if (setpriv) {
    const groups = [...new Set([user.gid, ...user.groups])].join(",");
    return {
      kind: "setpriv",
      file: setpriv,
      args: [`--reuid=${user.uid}`, `--regid=${user.gid}`, `--groups=${groups}`, "--"],
    };
  }
  return { kind: "ids", uid: user.uid, gid: user.gid };
}

let setprivLookup: Promise<string | undefined> | undefined;

/** The image's setpriv, looked for once, on the first child that needs it (not at every start). */
function findSetpriv(): Promise<string | undefined> {
  setprivLookup ??= (async () => {
    for (const candidate of SETPRIV_PATHS) {
      try {
        await access(candidate, constants.X_OK);
        return candidate;
      } catch {
        // try the next location
      }
    }
    return undefined;
  })();
  return setprivLookup;
}
