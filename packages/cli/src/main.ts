import { createRequire } from "node:module";
import { Command, CommanderError } from "commander";
import { agentCommand } from "./commands/agent.js";
import { bundleCommand } from "./commands/bundle.js";
import { clientCommand } from "./commands/client.js";
import { cpCommand } from "./commands/cp.js";
import { createCommand } from "./commands/create.js";
import { doctorCommand } from "./commands/doctor.js";
import { execCommand } from "./commands/exec.js";
import { forwardCommand } from "./commands/forward.js";
import { gcCommand } from "./commands/gc.js";
import { imageCommand } from "./commands/image.js";
import { initCommand } from "./commands/init.js";
import { keysCommand } from "./commands/keys.js";
import { logsCommand } from "./commands/logs.js";
import { lsCommand } from "./commands/ls.js";
import { pauseCommand } from "./commands/pause.js";
import { portsCommand } from "./commands/ports.js";
import { reconcileCommand } from "./commands/reconcile.js";
import { rmCommand } from "./commands/rm.js";
import { runCommand } from "./commands/run.js";
import { serveCommand } from "./commands/serve.js";
import { shellCommand } from "./commands/shell.js";
import { startCommand } from "./commands/start.js";
import { stopCommand } from "./commands/stop.js";
import { templateCommand } from "./commands/template.js";
import { unpauseCommand } from "./commands/unpause.js";
import { EXIT } from "./options.js";
import { useServer } from "./place.js";

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
    .option(
      "--server <url>",
      "work on a tether serve's sandboxes instead of this machine's (env TETHER_SERVER; key: TETHER_API_KEY)",
    )
    .hook("preAction", (root, command) => {
      const server = root.opts<{ server?: string }>().server ?? process.env.TETHER_SERVER;
      // `tether serve` is the server: its own TETHER_SERVER does not make it a client.
      if (server && command.name() !== "serve") useServer(server, process.env.TETHER_API_KEY, command.name());
    })
    .addCommand(agentCommand())
    .addCommand(runCommand())
    .addCommand(createCommand())
    .addCommand(lsCommand())
    .addCommand(execCommand())
    .addCommand(portsCommand())
    .addCommand(forwardCommand())
    .addCommand(shellCommand())
    .addCommand(cpCommand())
    .addCommand(initCommand())
    .addCommand(clientCommand())
    .addCommand(logsCommand())
    .addCommand(startCommand())
    .addCommand(stopCommand())
    .addCommand(pauseCommand())
    .addCommand(unpauseCommand())
    .addCommand(rmCommand())
    .addCommand(gcCommand())
    .addCommand(reconcileCommand())
    .addCommand(doctorCommand())
    .addCommand(bundleCommand())
    .addCommand(imageCommand())
    .addCommand(serveCommand())
    .addCommand(keysCommand())
    .addCommand(templateCommand());
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const command of all(program).slice(1)) {
    command.exitOverride().showHelpAfterError("(run with --help for usage)");
  }
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
    throw err;
  }
}
