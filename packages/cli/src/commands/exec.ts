import { Agent } from "@tether/sdk";
import { Command } from "commander";
import { attach, flushOutput } from "../attach.js";
import { collectEnv, optionsAfterTarget } from "../options.js";
import { connectSandbox } from "../sandboxes.js";

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

/**
 * `tether exec ID [-t] [-i] [-e K=V] [-w DIR] [-u USER] -- ARGV`: runs a command in a sandbox;
 * `tether exec --agent URL | --socket PATH -- ARGV` in an agent reached directly.
 */
export function execCommand(): Command {
  return new Command("exec")
    .summary("run a command in a sandbox (or in an agent reached directly)")
    .description(
      "Runs a command in a running sandbox with this terminal's stdout and stderr (stdin with -i)\n" +
        "and exits with its exit code (128+N after signal N). With --agent or --socket instead of\n" +
        "an id, runs it in a tetherd reached directly.",
    )
    .usage(
      "[options] ID [--] COMMAND [ARGS...]\n       tether exec --agent URL | --socket PATH [options] -- COMMAND [ARGS...]",
    )
    .option("--agent <url>", "the agent's URL, e.g. http://127.0.0.1:49983 (instead of ID)")
    .option("--socket <path>", "the agent's unix socket (instead of ID)")
    .option("--token <token>", "the agent's access token (env TETHER_ACCESS_TOKEN), with --agent/--socket")
    .option("-t, --tty", "run on a pseudo-terminal (raw mode, follows window resizes)")
    .option("-i, --interactive", "forward stdin to the command")
    .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", collectEnv, {})
    .option("-w, --workdir <dir>", "working directory for the command")
    .option("-u, --user <name>", "Unix user to run as (the agent must run as root)")
    .argument("<args...>", "the sandbox id, then the command and its arguments")
    .passThroughOptions()
    .action(async function (this: Command, args: string[]) {
      const direct = this.getOptionValue("agent") !== undefined || this.getOptionValue("socket") !== undefined;
      const [id, argv] = direct ? [undefined, args] : optionsAfterTarget(this, args);
      const flags = this.opts<ExecFlags>();
      if (flags.agent !== undefined && flags.socket !== undefined) {
        this.error("error: give one of --agent URL or --socket PATH, not both");
      }
      if (argv.length === 0) {
        this.error(
          "error: no command given: tether exec ID -- COMMAND, or with --agent URL or --socket PATH -- COMMAND",
        );
      }
      let agent: Agent;
      if (id === undefined) {
        const accessToken = flags.token ?? process.env.TETHER_ACCESS_TOKEN;
        const target = flags.agent !== undefined ? { url: flags.agent } : { socket: flags.socket as string };
        agent = new Agent({ ...target, accessToken });
      } else {
        if (flags.token !== undefined) this.error("error: --token goes with --agent or --socket, not a sandbox id");
        agent = await connectSandbox(id);
      }
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
