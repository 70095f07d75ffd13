import { Command } from "commander";
import { type Attached, attach, flushOutput } from "../attach.js";
import { type LocalAgent, startLocalAgent } from "../local-agent.js";
import { collectEnv, EXIT } from "../options.js";

interface RunFlags {
  env: Record<string, string>;
  workdir?: string;
  tty?: boolean;
}

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/**
 * `tether run -- ARGV`: runs a command through a private tetherd started for this one
 * command. Until sandbox backends exist, that agent runs on this machine, as this user.
 */
export function runCommand(): Command {
  return new Command("run")
    .summary("run a command through a private agent started just for it")
    .description(
      "Starts a private tetherd on a unix socket, runs the command through it with this terminal's\n" +
        "stdin, stdout and stderr, and exits with the command's exit code (128+N after signal N).\n" +
        "For now the agent runs on this machine as this user: there is no sandbox backend yet.",
    )
    .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", collectEnv, {})
    .option("-w, --workdir <dir>", "working directory for the command")
    .option("-t, --tty", "run on a pseudo-terminal (raw mode, follows window resizes)")
    .argument("<command...>", "the command and its arguments, after --")
    .passThroughOptions()
    .action(async (argv: string[], flags: RunFlags) => {
      process.exitCode = await run(argv, flags);
      await flushOutput();
      process.exit();
    });
}

async function run(argv: string[], flags: RunFlags): Promise<number> {
  const progress = (text: string) => {
    if (process.stderr.isTTY) process.stderr.write(`tether: ${text}\n`);
  };
  let agent: LocalAgent | undefined;
  let running: Attached | undefined;
  let interrupted: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      // A second Ctrl-C: stop waiting for a clean end (the exit hook still kills the agent).
      process.exit(SIGNAL_EXIT[signal] ?? EXIT.failure);
    }
    interrupted = signal;
    running?.kill("SIGTERM").catch(() => {});
    setTimeout(() => running?.kill("SIGKILL").catch(() => {}), 2_000).unref();
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, onSignal);
  try {
    progress("starting a private agent on this machine (no sandbox)");
    try {
      agent = await startLocalAgent();
    } catch (err) {
      process.stderr.write(`tether: ${err instanceof Error ? err.message : err}\n`);
      return EXIT.failure;
    }
    if (interrupted) return SIGNAL_EXIT[interrupted] ?? EXIT.failure;
    const code = await attach(
      agent.client,
      { argv, envs: flags.env, cwd: flags.workdir, tty: flags.tty ?? false, stdin: true },
      (a) => {
        running = a;
      },
    );
    return interrupted ? (SIGNAL_EXIT[interrupted] ?? code) : code;
  } finally {
    await agent?.stop();
    for (const s of signals) process.off(s, onSignal);
  }
}
