import { Command } from "commander";
import { connectTarget, withTargetOptions } from "../target.js";

interface InitFlags {
  repo: string[];
  gitName?: string;
  gitEmail?: string;
  sshKey: boolean;
  gpgKey: boolean;
  user?: string;
  json?: boolean;
}

/** `tether init ID --repo URL...`: clones repositories, makes SSH/GPG keys, sets git up. */
export function initCommand(): Command {
  return withTargetOptions(
    new Command("init")
      .summary("set a sandbox's workspace up: clone repositories, make SSH and GPG keys, configure git")
      .description(
        "Clones each --repo (any git URL, file:// included) into the user's home, makes an ed25519 SSH key and a\n" +
          "GPG signing key when missing, and sets git's user.name, user.email, user.signingkey and commit.gpgsign.\n" +
          "Every line the tools print goes to stderr; the public keys go to stdout. Running it again changes nothing.",
      )
      .argument("[id]", "the sandbox id or name")
      .option("--repo <url>", "a repository to clone (repeatable)", (v: string, prev: string[]) => [...prev, v], [])
      .option("--git-name <name>", "git config --global user.name")
      .option("--git-email <email>", "git config --global user.email")
      .option("--no-ssh-key", "do not make an SSH key")
      .option("--no-gpg-key", "do not make a GPG key or sign commits")
      .option("-u, --user <name>", "the Unix user to set up (the agent must run as root)")
      .option("--json", "print the result as JSON on stdout"),
  ).action(async function (this: Command, id: string | undefined, flags: InitFlags) {
    const agent = await connectTarget(this, id);
    try {
      const run = agent.workspace.init({
        repositories: flags.repo,
        gitUserName: flags.gitName,
        gitUserEmail: flags.gitEmail,
        sshKey: flags.sshKey,
        gpgKey: flags.gpgKey,
        user: flags.user,
      });
      for await (const line of run) process.stderr.write(line.header ? `==> ${line.text}\n` : `    ${line.text}\n`);
      const result = await run.result;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      if (result.sshPublicKey) process.stdout.write(`${result.sshPublicKey}\n`);
      if (result.gpgPublicKey) process.stdout.write(`${result.gpgPublicKey}\n`);
      process.stderr.write(
        result.changed ? "workspace initialised\n" : "workspace already initialised: nothing changed\n",
      );
    } finally {
      agent.close();
    }
  });
}
