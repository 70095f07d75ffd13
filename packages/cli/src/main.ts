import { createRequire } from "node:module";
import { Command, CommanderError } from "commander";
import { agentCommand } from "./commands/agent.js";
import { execCommand } from "./commands/exec.js";
import { runCommand } from "./commands/run.js";
import { EXIT } from "./options.js";

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

/** `tether`: the command-line entry. */
export async function main(argv = process.argv): Promise<void> {
  const program = new Command("tether")
    .description("Run commands in sandboxes and drive them from outside.")
    .version(version)
    // Flags after the command (`tether run ls -l`) belong to the command, not to tether.
    .enablePositionalOptions()
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .addCommand(agentCommand())
    .addCommand(runCommand())
    .addCommand(execCommand());
  for (const command of program.commands) command.exitOverride().showHelpAfterError("(run with --help for usage)");
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
    throw err;
  }
}
