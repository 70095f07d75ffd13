import { Agent } from "@tether/sdk";
import { Command } from "commander";
import { attach, flushOutput } from "../attach.js";
import { collectEnv } from "../options.js";

interface ExecFlags {
  agent?: string;
  socket?: string;
  token?: string;
  tty?: boolean;
  interactive?: boolean;
  env: Record<string, string>;
  workdir?: string;
  user?: string;
}

/** `tether exec --agent URL | --socket PATH -- ARGV`: runs a command in a running agent. */
export function execCommand(): Command {
  return new Command("exec")
    .summary("run a command in an agent that is already running")
    .description("Runs a command in a running tetherd and exits with its exit code (128+N after signal N).")
    .option("--agent <url>", "the agent's URL, e.g. http://127.0.0.1:49983")
    .option("--socket <path>", "the agent's unix socket")
    .option("--token <token>", "the agent's access token (env TETHER_ACCESS_TOKEN)")
    .option("-t, --tty", "run on a pseudo-terminal (raw mode, follows window resizes)")
    .option("-i, --interactive", "forward stdin to the command")
    .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", collectEnv, {})
    .option("-w, --workdir <dir>", "working directory for the command")
    .option("-u, --user <name>", "Unix user to run as (the agent must run as root)")
    .argument("<command...>", "the command and its arguments, after --")
    .passThroughOptions()
    .action(async function (this: Command, argv: string[], flags: ExecFlags) {
      if ((flags.agent === undefined) === (flags.socket === undefined)) {
        this.error("error: give exactly one of --agent URL or --socket PATH");
      }
      const accessToken = flags.token ?? process.env.TETHER_ACCESS_TOKEN;
      const target = flags.agent !== undefined ? { url: flags.agent } : { socket: flags.socket as string };
      const agent = new Agent({ ...target, accessToken });
      process.exitCode = await attach(agent, {
        argv,
        envs: flags.env,
        cwd: flags.workdir,
        user: flags.user,
        tty: flags.tty ?? false,
        stdin: flags.interactive ?? false,
      });
      agent.close();
      await flushOutput();
      process.exit();
    });
}
