import { type Agent, type CommandHandle, type PtyHandle, shellExitCode } from "@tether/sdk";
import { COMMAND_EXIT_CODES, exitCodeOf } from "./options.js";

/** What to run in the agent, and how to wire it to this terminal. */
export interface AttachOptions {
  argv: string[];
  envs: Record<string, string>;
  cwd?: string;
  user?: string;
  /** Run on a pseudo-terminal; this terminal goes to raw mode and follows resizes. */
  tty: boolean;
  /** Forward this process's stdin. */
  stdin: boolean;
}

/** A command running under `attach`, for signal handlers to stop. */
export interface Attached {
  kill(signal: "SIGTERM" | "SIGKILL"): Promise<void>;
}

/**
 * Runs a command in the agent with this process's stdin/stdout/stderr and returns the
 * exit code to leave with: the command's own, or 128 + signal number.
 */
export async function attach(agent: Agent, options: AttachOptions, onStarted?: (a: Attached) => void): Promise<number> {
  try {
    return options.tty ? await attachPty(agent, options, onStarted) : await attachPipes(agent, options, onStarted);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`tether: ${message}\n`);
    return exitCodeOf(err, COMMAND_EXIT_CODES);
  }
}

async function attachPipes(agent: Agent, o: AttachOptions, onStarted?: (a: Attached) => void): Promise<number> {
  let handle: CommandHandle | undefined;
  // Like a local pipeline: when our reader goes away (`| head`), the command is stopped.
  const stdout = new Output(process.stdout, () => void handle?.kill("SIGKILL").catch(() => {}));
  const stderr = new Output(process.stderr);
  handle = await agent.commands.start(o.argv, {
    envs: o.envs,
    cwd: o.cwd,
    user: o.user,
    stdin: o.stdin ? process.stdin : false,
    keepOutput: false,
    reject: false,
    onStdout: (data) => stdout.write(data),
    onStderr: (data) => stderr.write(data),
  });
  onStarted?.(handle);
  const result = await handle.wait();
  return stdout.broken ? SIGPIPE_EXIT : shellExitCode(result);
}

async function attachPty(agent: Agent, o: AttachOptions, onStarted?: (a: Attached) => void): Promise<number> {
  const size = () => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
  let started: PtyHandle | undefined;
  const stdout = new Output(process.stdout, () => void started?.kill("SIGKILL").catch(() => {}));
  const terminal = await agent.pty.create({
    ...size(),
    argv: o.argv,
    envs: { TERM: process.env.TERM || "xterm-256color", ...o.envs },
    cwd: o.cwd,
    user: o.user,
    onData: (data) => stdout.write(data),
  });
  started = terminal;
  onStarted?.(terminal);
  const raw = o.stdin && process.stdin.isTTY;
  const onResize = () => void terminal.resize(size()).catch(() => {});
  process.stdout.on("resize", onResize);
  try {
    if (raw) process.stdin.setRawMode(true);
    if (o.stdin) terminal.streamInput(process.stdin).catch(() => {});
    const exit = await terminal.wait();
    return stdout.broken ? SIGPIPE_EXIT : shellExitCode(exit);
  } finally {
    process.stdout.off("resize", onResize);
    if (raw) process.stdin.setRawMode(false);
  }
}

/** What a local process killed by a broken pipe exits with (128 + SIGPIPE). */
const SIGPIPE_EXIT = 141;

/**
 * One of our output streams. Writes apply backpressure (a slow reader slows the agent
 * down instead of filling memory); once the reader is gone, output is dropped.
 */
class Output {
  broken = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    onBroken?: () => void,
  ) {
    stream.on("error", () => {
      if (this.broken) return;
      this.broken = true;
      onBroken?.();
    });
  }

  async write(data: Uint8Array): Promise<void> {
    const stream = this.stream;
    if (this.broken || stream.destroyed || stream.write(data)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        for (const event of ["drain", "close", "error"]) stream.off(event, done);
        resolve();
      };
      for (const event of ["drain", "close", "error"]) stream.once(event, done);
    });
  }
}

/** Waits until everything written to stdout and stderr has been handed to the OS. */
export async function flushOutput(): Promise<void> {
  await Promise.all(
    [process.stdout, process.stderr].map(
      (s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.write("", () => resolve()))),
    ),
  );
}
