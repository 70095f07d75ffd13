import { Command } from "commander";
import { attach, flushOutput } from "../attach.js";
import { loginShell } from "../login-shell.js";
import { collectEnv } from "../options.js";
import { connectSandbox } from "../sandboxes.js";

/** `tether shell ID`: an interactive login shell in the sandbox, on a PTY. */
export function shellCommand(): Command {
  return new Command("shell")
    .summary("open a login shell in a sandbox")
    .description(
      "Opens the user's login shell (from the sandbox's /etc/passwd, else /bin/sh) on a\n" +
        "pseudo-terminal; exits with the shell's exit code.",
    )
    .argument("<id>", "sandbox id or name")
    .option("-u, --user <name>", "Unix user to log in as (default: root's shell, the sandbox's default user)")
    .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", collectEnv, {})
    .option("-w, --workdir <dir>", "working directory")
    .action(async (id: string, flags: { user?: string; env: Record<string, string>; workdir?: string }) => {
      const agent = await connectSandbox(id);
      let shell: string;
      try {
        shell = await loginShell(agent, id, flags.user);
      } catch (err) {
        agent.close();
        throw err;
      }
      process.exitCode = await attach(agent, {
        argv: [shell, "-l"],
        envs: flags.env,
        cwd: flags.workdir,
        user: flags.user,
        tty: true,
        stdin: true,
      });
      agent.close();
      await flushOutput();
      process.exit();
    });
}
