import { type Agent, NotFoundError } from "@tether/sdk";
import { NoShellError } from "./errors.js";

/** Shells that only refuse logins; a fallback to /bin/sh is more useful than their message. */
const NO_LOGIN = /\/(nologin|false)$/;

/**
 * The shell to open in a sandbox: `user`'s (default root's) from the sandbox's /etc/passwd
 * when it exists there, else /bin/sh. Throws when the image has no shell at all.
 */
export async function loginShell(agent: Agent, id: string, user = "root"): Promise<string> {
  const passwd = await agent.files.read("/etc/passwd").catch((err: unknown) => {
    if (err instanceof NotFoundError) return "";
    throw err;
  });
  const entry = passwd
    .split("\n")
    .map((line) => line.split(":"))
    .find((f) => f.length >= 7 && (f[0] === user || f[2] === user));
  const candidates = [entry?.[6], "/bin/sh"].filter((s): s is string => !!s && s.startsWith("/") && !NO_LOGIN.test(s));
  for (const shell of candidates) {
    if (await agent.files.exists(shell)) return shell;
  }
  throw new NoShellError(id, [...new Set(candidates)]);
}
