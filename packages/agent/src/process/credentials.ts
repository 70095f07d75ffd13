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
 * uid/gid and those groups are lost (or, for a PTY, root's are kept).
 */
export class CredentialSwitch {
  private setpriv: string | undefined;
  readonly ready: Promise<void>;

  constructor(private readonly users: UserDirectory) {
    this.ready = this.findSetpriv();
  }

  /** The credentials for a child of `user`; `pty` children always need the groups reset. */
  for(user: UnixUser, pty: boolean): Credentials {
    const self = this.users.current;
    if (!this.users.isRoot || (user.uid === self.uid && user.gid === self.gid)) return { kind: "inherit" };
    const onlyPrimaryGroup = user.groups.every((g) => g === user.gid);
    if (this.setpriv && (pty || !onlyPrimaryGroup)) {
      const groups = [...new Set([user.gid, ...user.groups])].join(",");
      return {
        kind: "setpriv",
        file: this.setpriv,
        args: [`--reuid=${user.uid}`, `--regid=${user.gid}`, `--groups=${groups}`, "--"],
      };
    }
    return { kind: "ids", uid: user.uid, gid: user.gid };
  }

  private async findSetpriv(): Promise<void> {
    for (const candidate of SETPRIV_PATHS) {
      try {
        await access(candidate, constants.X_OK);
        this.setpriv = candidate;
        return;
      } catch {
        // try the next location
      }
    }
  }
}
