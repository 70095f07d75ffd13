import { readFileSync, statSync } from "node:fs";

/** How long a parsed account file is trusted before its mtime is checked again. */
const RECHECK_MS = 2_000;

/**
 * uid and gid to names, from /etc/passwd and /etc/group (no NSS, like UserDirectory).
 * Re-reads a file when it changed, so users added after start get their names.
 */
export class OwnerNames {
  private readonly users: AccountFile;
  private readonly groups: AccountFile;

  constructor(passwdPath = "/etc/passwd", groupPath = "/etc/group") {
    this.users = new AccountFile(passwdPath);
    this.groups = new AccountFile(groupPath);
  }

  /** The user name of a uid, or the uid as text when no account has it (envd does so). */
  user(uid: number): string {
    return this.users.name(uid);
  }

  group(gid: number): string {
    return this.groups.name(gid);
  }
}

class AccountFile {
  private names = new Map<number, string>();
  private mtimeMs = -1;
  private checkedAt = 0;

  constructor(private readonly path: string) {}

  name(id: number): string {
    this.refresh(false);
    let name = this.names.get(id);
    // An unknown id may belong to an account added since the last look.
    if (name === undefined) {
      this.refresh(true);
      name = this.names.get(id);
    }
    return name ?? String(id);
  }

  private refresh(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    const mtimeMs = statSync(this.path, { throwIfNoEntry: false })?.mtimeMs ?? 0;
    if (mtimeMs === this.mtimeMs) return;
    this.mtimeMs = mtimeMs;
    const names = new Map<number, string>();
    let text = "";
    try {
      text = readFileSync(this.path, "utf8");
    } catch {
      // No account file (minimal images): every owner shows as a number.
    }
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const [name, , id] = line.split(":");
      const num = Number(id);
      // The first entry wins, as with getpwuid.
      if (name && Number.isInteger(num) && !names.has(num)) names.set(num, name);
    }
    this.names = names;
  }
}
