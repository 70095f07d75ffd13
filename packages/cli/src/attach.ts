import { once } from "node:events";
import {
  type Agent,
  type CommandHandle,
  NotFoundError,
  PermissionDeniedError,
  type PtyHandle,
  shellExitCode,
} from "@tether/sdk";
import { EXIT } from "./options.js";

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
    if (err instanceof NotFoundError) return EXIT.notFound;
    if (err instanceof PermissionDeniedError) return EXIT.cannotRun;
    return EXIT.failure;
  }
}

async function attachPipes(agent: Agent, o: AttachOptions, onStarted?: (a: Attached) => void): Promise<number> {
  let handle: CommandHandle | undefined;
  const stopOnBrokenPipe = () => void handle?.kill("SIGKILL").catch(() => {});
  process.stdout.on("error", stopOnBrokenPipe);
  handle = await agent.commands.start(o.argv, {
    envs: o.envs,
    cwd: o.cwd,
    user: o.user,
    stdin: o.stdin ? process.stdin : false,
    keepOutput: false,
    reject: false,
    onStdout: (data) => writeOut(process.stdout, data),
    onStderr: (data) => writeOut(process.stderr, data),
  });
  onStarted?.(handle);
  const result = await handle.wait();
  return shellExitCode(result);
}

async function attachPty(agent: Agent, o: AttachOptions, onStarted?: (a: Attached) => void): Promise<number> {
  const size = () => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
  const pty: PtyHandle = await agent.pty.create({
    ...size(),
    argv: o.argv,
    envs: { TERM: process.env.TERM || "xterm-256color", ...o.envs },
    cwd: o.cwd,
    user: o.user,
    onData: (data) => writeOut(process.stdout, data),
  });
  onStarted?.(pty);
  const raw = o.stdin && process.stdin.isTTY;
  const onResize = () => void pty.resize(size()).catch(() => {});
  process.stdout.on("resize", onResize);
  try {
    if (raw) process.stdin.setRawMode(true);
    if (o.stdin) pty.streamInput(process.stdin).catch(() => {});
    return shellExitCode(await pty.wait());
  } finally {
    process.stdout.off("resize", onResize);
    if (raw) process.stdin.setRawMode(false);
  }
}

/** Writes with backpressure, so a slow reader slows the agent down instead of filling memory. */
async function writeOut(stream: NodeJS.WriteStream, data: Uint8Array): Promise<void> {
  if (stream.destroyed) return;
  if (!stream.write(data)) await Promise.race([once(stream, "drain"), once(stream, "close")]);
}

/** Waits until everything written to stdout and stderr has been handed to the OS. */
export async function flushOutput(): Promise<void> {
  await Promise.all(
    [process.stdout, process.stderr].map(
      (s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.write("", () => resolve()))),
    ),
  );
}
