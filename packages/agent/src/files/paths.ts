import path from "node:path";
import type { UnixUser } from "../auth/users.js";
import { invalidPath } from "./errors.js";

/**
 * The absolute, normalized path a request means: `~` and `~/x` expand to the user's
 * home, relative paths resolve against it (envd's rule), `..` and `//` are folded.
 */
export function resolveUserPath(user: UnixUser, raw: string, what = "path"): string {
  if (raw === "") throw invalidPath("", `${what} is empty`);
  if (raw.includes("\0")) throw invalidPath(raw.replaceAll("\0", "\\0"), `${what} contains a NUL byte`);
  let expanded = raw;
  if (raw === "~") expanded = user.home;
  else if (raw.startsWith("~/")) expanded = path.join(user.home, raw.slice(2));
  return path.resolve(user.home, expanded);
}
