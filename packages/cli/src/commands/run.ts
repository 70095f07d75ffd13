import type { SandboxInfo } from "@tether/host";
import type { Agent } from "@tether/sdk";
import { Command } from "commander";
import { type Attached, attach, flushOutput } from "../attach.js";
import { addCreateOptions, type CreateFlags, createOptionsFrom } from "../create-options.js";
import { embeddedSandboxes } from "../embedded.js";
import {
  addLifecycleOptions,
  type LifecycleFlags,
  lifecycleOptionsFrom,
  warnIfLoopbackReachable,
  warnIfUnisolated,
} from "../lifecycle-options.js";
import { collectEnv, EXIT } from "../options.js";
import { progress, sandboxes } from "../sandboxes.js";

interface RunFlags extends Partial<CreateFlags>, LifecycleFlags {
  image?: string;
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  tty?: boolean;
}

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
/**
 * A run's sandbox is removed when the run ends; should this process be killed first
 * (kill -9), the next tether call removes it once it has been idle this long.
 */
const RUN_IDLE_GUARD_MS = 10 * 60_000;

/**
 * `tether run [--image IMG | --backend KIND] [sandbox options] -- ARGV`: runs the command in a
 * sandbox made for it and removed after: from the image (docker), or without one in the
 * embedded default (bwrap where it works, else local).
 */
export function runCommand(): Command {
  const command = addCreateOptions(
    new Command("run")
      .summary("run a command in a fresh sandbox (from --image, or bwrap/local without one)")
      .description(
        "Creates a sandbox, runs the command in it with this terminal's stdin, stdout and stderr,\n" +
          "removes the sandbox (also after Ctrl-C or an error) and exits with the command's exit code\n" +
          "(128+N after signal N; 125 when tether itself failed).\n" +
          "With --image the sandbox is a container (docker). Without, it is the embedded default, which\n" +
          "needs no image, registry or daemon: bubblewrap (host root read-only, private /tmp, no network)\n" +
          "where it works, else local: a plain process of this user with NO isolation (said on stderr).\n" +
          "`tether doctor` says which one this machine gets.",
      )
      .option("--image <image>", "run in a new sandbox from this local image")
      .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", collectEnv, {})
      .option("-w, --workdir <dir>", "working directory for the command")
      .option("-u, --user <name>", "Unix user to run as")
      .option("-t, --tty", "run on a pseudo-terminal (raw mode, follows window resizes)"),
    false,
  );
  return addLifecycleOptions(command)
    .argument("<command...>", "the command and its arguments, after --")
    .passThroughOptions()
    .action(async (argv: string[], flags: RunFlags) => {
      process.exitCode = await run(argv, flags);
      await flushOutput();
      process.exit();
    });
}

/** What the command runs through: a sandbox made for it, or a private local agent. */
interface Runner {
  client: Agent;
  dispose(): Promise<void>;
}

async function run(argv: string[], flags: RunFlags): Promise<number> {
  let runner: Runner | undefined;
  let running: Attached | undefined;
  let interrupted: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      // A second Ctrl-C: stop waiting for a clean end (a sandbox left behind is removed once idle).
      process.exit(SIGNAL_EXIT[signal] ?? EXIT.failure);
    }
    interrupted = signal;
    running?.kill("SIGTERM").catch(() => {});
    setTimeout(() => running?.kill("SIGKILL").catch(() => {}), 2_000).unref();
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, onSignal);
  try {
    try {
      runner = flags.image !== undefined ? await sandboxRunner(flags.image, flags) : await embeddedRunner(flags);
    } catch (err) {
      process.stderr.write(`tether: ${err instanceof Error ? err.message : err}\n`);
      return EXIT.failure;
    }
    if (interrupted) return SIGNAL_EXIT[interrupted] ?? EXIT.failure;
    const code = await attach(
      runner.client,
      {
        argv,
        envs: flags.env,
        cwd: flags.workdir,
        user: flags.user,
        tty: flags.tty ?? false,
        stdin: true,
      },
      (a) => {
        running = a;
      },
    );
    return interrupted ? (SIGNAL_EXIT[interrupted] ?? code) : code;
  } finally {
    await runner?.dispose().catch((err: unknown) => {
      process.stderr.write(`tether: ${err instanceof Error ? err.message : err}\n`);
      process.exitCode = EXIT.failure;
    });
    for (const s of signals) process.off(s, onSignal);
  }
}

/** A sandbox from `image` just for this command: the image's own command does not run. */
async function sandboxRunner(image: string, flags: RunFlags): Promise<Runner> {
  progress(`creating a sandbox from ${image}`);
  const { env: _env, workdir: _workdir, user: _user, ...sandboxFlags } = flags;
  const info: SandboxInfo = await sandboxes().create(image, {
    ...createOptionsFrom(sandboxFlags),
    ...lifecycleOptionsFrom(flags),
    runCommand: false,
  });
  warnIfLoopbackReachable(info, flags.network);
  const remove = async () => {
    progress(`removing sandbox ${info.id}`);
    await sandboxes().remove(info.id);
  };
  return connectedRunner(() => sandboxes().connect(info.id), remove);
}

/**
 * A sandbox without an image, in the embedded default (or --backend): recorded in the
 * registry when it can be, removed after the command.
 */
async function embeddedRunner(flags: RunFlags): Promise<Runner> {
  const { sandboxes: embedded, dispose } = await embeddedSandboxes();
  const { env: _env, workdir: _workdir, user: _user, ...sandboxFlags } = flags;
  let info: SandboxInfo;
  try {
    info = await embedded.create(undefined, {
      idleTimeoutMs: RUN_IDLE_GUARD_MS,
      onExpiry: "remove",
      metadata: { createdBy: "tether run" },
      ...createOptionsFrom(sandboxFlags),
      ...lifecycleOptionsFrom(flags),
    });
  } catch (err) {
    await dispose();
    throw err;
  }
  warnIfUnisolated(info);
  progress(`running in ${info.backend} sandbox ${info.id}`);
  const remove = async () => {
    await embedded.remove(info.id);
    await dispose();
  };
  return connectedRunner(() => embedded.connect(info.id), remove);
}

/** The runner of a sandbox just made: a connect that fails removes the sandbox. */
async function connectedRunner(connect: () => Promise<Agent>, remove: () => Promise<void>): Promise<Runner> {
  let client: Agent;
  try {
    client = await connect();
  } catch (err) {
    await remove().catch(() => {});
    throw err;
  }
  return {
    client,
    async dispose() {
      client.close();
      await remove();
    },
  };
}
