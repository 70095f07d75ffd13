import { Command } from "commander";

/** `tether agent [tetherd flags]`: runs tetherd in the foreground. */
export function agentCommand(): Command {
  return new Command("agent")
    .summary("run the agent (tetherd) in the foreground; takes tetherd's flags")
    .description("Runs tetherd in the foreground with tetherd's own flags (see `tether agent --help`).")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[flags...]", "tetherd flags, e.g. --port 0 --socket /run/tether.sock")
    .action(async (flags: string[]) => {
      // Loaded on demand: the agent pulls in node-pty and more that other commands never need.
      const { main } = await import("@tether/agent");
      await main([process.argv[0], "tether agent", ...flags]);
    });
}
