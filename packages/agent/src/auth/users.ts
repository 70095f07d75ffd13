import os from "node:os";
import { type HeaderSource, headerValue } from "./access.js";
import { AccountFile } from "./accounts.js";

/** A Unix account a process runs as or a path is resolved for. */
export interface UnixUser {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary group ids, primary gid included. */
  groups: number[];
  home: string;
  shell: string;
}

/** The largest uid a process can switch to: uid_t is 32 bits and 2^32-1 is setuid's "no change". */
const MAX_UID = 2 ** 32 - 2;

/** The requested user does not exist, or the agent cannot act as it. */
export class UnknownUserError extends Error {
  constructor(
    readonly username: string,
    reason: string,
    /** True when no account has the name (not merely one the agent cannot act as). */
    readonly missing = false,
  ) {
    super(`user "${username}": ${reason}`);
    this.name = "UnknownUserError";
  }
}

/** Looks accounts up in /etc/passwd and /etc/group. */
export class UserDirectory {
  private readonly passwd: AccountFile;
  private readonly group: AccountFile;
  private readonly self: UnixUser;

  constructor(passwdPath = "/etc/passwd", groupPath = "/etc/group") {
    this.passwd = new AccountFile(passwdPath);
    this.group = new AccountFile(groupPath);
    this.self = this.currentUser();
  }

  /** The account the agent itself runs as. */
  get current(): UnixUser {
    return this.self;
  }

  get isRoot(): boolean {
    return this.self.uid === 0;
  }

  /** Resolves a username; the agent's own account when the name is empty. */
  resolve(username: string | undefined): UnixUser {
    if (!username || username === this.self.name) return this.self;
    const user = this.lookup(username);
    if (!user) throw new UnknownUserError(username, "no such user in /etc/passwd", true);
    if (!this.isRoot && user.uid !== this.self.uid) {
      throw new UnknownUserError(username, `the agent runs as "${this.self.name}" (not root) and cannot switch users`);
    }
    return user;
  }

  /** The name of a uid, or the uid as text when no account has it (envd does so). */
  userName(uid: number): string {
    return this.passwd.find(2, String(uid))?.[0] || String(uid);
  }

  /** The name of a gid, or the gid as text. */
  groupName(gid: number): string {
    return this.group.find(2, String(gid))?.[0] || String(gid);
  }

  private lookup(username: string): UnixUser | undefined {
    let record = this.passwd.find(0, username);
    // A numeric user (an image's `USER 1000`) may name an account by uid, or none at all:
    // like docker, a uid without a passwd entry runs with gid 0 and home /.
    if (!record && /^\d+$/.test(username)) {
      // setuid takes 32 bits: 4294967296 would wrap to root, and (uid_t)-1 means "unchanged".
      if (Number(username) > MAX_UID) {
        throw new UnknownUserError(username, `a numeric user must be a uid from 0 to ${MAX_UID}`);
      }
      record = this.passwd.find(2, username);
      if (!record) return { name: username, uid: Number(username), gid: 0, groups: [0], home: "/", shell: "/bin/sh" };
    }
    if (!record) return undefined;
    const [name, , uid, gid, , home, shell] = record;
    return this.toUser(name, Number(uid), Number(gid), home || "/", shell || "/bin/sh");
  }

  private currentUser(): UnixUser {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const record = this.passwd.find(2, String(uid));
    if (record) {
      const [name, , , , , home, shell] = record;
      return this.toUser(name, uid, gid, home || os.homedir(), shell || "/bin/sh");
    }
    // Images may lack a passwd entry for the uid we run as (docker --user 1234).
    return { name: String(uid), uid, gid, groups: [gid], home: process.env.HOME || "/", shell: "/bin/sh" };
  }

  private toUser(name: string, uid: number, gid: number, home: string, shell: string): UnixUser {
    const groups = new Set([gid]);
    for (const [, , id, members] of this.group.records()) {
      if (members?.split(",").includes(name)) groups.add(Number(id));
    }
    return { name, uid, gid, groups: [...groups], home, shell };
  }
}

/** The username envd clients send: HTTP Basic auth with the name and an empty password. */
export function usernameFromHeaders(headers: HeaderSource): string | undefined {
  const auth = headerValue(headers, "authorization");
  if (!auth?.toLowerCase().startsWith("basic ")) return undefined;
  const decoded = Buffer.from(auth.slice(6).trim(), "base64").toString("utf8");
  const name = decoded.split(":")[0];
  return name || undefined;
}
