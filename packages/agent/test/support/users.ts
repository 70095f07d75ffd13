import { execFileSync } from "node:child_process";

export const isRoot = process.getuid?.() === 0;

export interface TestUser {
  name: string;
  uid: number;
  home: string;
  remove(): void;
}

/** Creates a throwaway Unix user with a fresh home from /etc/skel (needs root). */
export function createTestUser(prefix: string, options: { shell?: string; groups?: string[] } = {}): TestUser {
  const name = `${prefix}${process.pid}`.slice(0, 31);
  const args = ["-m", "-s", options.shell ?? "/bin/sh"];
  if (options.groups?.length) args.push("-G", options.groups.join(","));
  userTool("useradd", [...args, name]);
  const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
  return {
    name,
    uid,
    home: `/home/${name}`,
    remove: () => userTool("userdel", ["-r", name]),
  };
}

/**
 * Runs useradd, userdel, groupadd or groupdel, retrying while another test file holds the
 * lock on /etc/passwd or /etc/group (those tools fail at once instead of waiting).
 */
export function userTool(tool: "useradd" | "userdel" | "groupadd" | "groupdel", args: string[]): void {
  for (let attempt = 0; ; attempt++) {
    try {
      execFileSync(tool, args, { stdio: "pipe" });
      return;
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? "");
      if (attempt >= 50 || !/lock/i.test(stderr)) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
}
