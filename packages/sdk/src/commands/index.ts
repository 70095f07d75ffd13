import { type Client, createClient } from "@connectrpc/connect";
import { Process, Signal } from "@tether/protocol/process";
import type { Connection } from "../connection.js";
import { toTetherError } from "../errors.js";
import { serverStream } from "../server-stream.js";
import { type OutputChunk, OutputLog, ProcessEvents } from "./events.js";
import { CommandHandle, type CommandResult, type KillSignal } from "./handle.js";
import type { InputSource } from "./input.js";

export type { OutputChunk, OutputKind } from "./events.js";
export type { CommandResult, KillSignal } from "./handle.js";
export { CommandHandle } from "./handle.js";
export type { InputSource } from "./input.js";
export { type ProcessExit, shellExitCode, signalFromStatus } from "./status.js";

/**
 * What to run: an argv array (no shell), `{cmd, args}`, or a string run by `/bin/sh -c`.
 */
export type CommandSpec = string[] | { cmd: string; args?: string[] } | string;

export interface CommandOptions {
  /** Extra environment variables, over the agent's defaults. */
  envs?: Record<string, string>;
  /** Working directory; the user's home when unset. */
  cwd?: string;
  /** Unix user to run as (the agent must run as root to switch). */
  user?: string;
  /** A name the agent can find the process by. */
  tag?: string;
  /**
   * Data for stdin, streamed and then closed; `true` keeps stdin open for
   * `sendStdin` / `closeStdin`. Unset or `false`: stdin is empty.
   */
  stdin?: InputSource | boolean;
  /** Called with each stdout chunk (raw bytes); a returned promise is awaited. */
  onStdout?: (data: Uint8Array) => void | Promise<void>;
  onStderr?: (data: Uint8Array) => void | Promise<void>;
  /** Kill the command (SIGKILL) after this long; it then fails as timed out. */
  timeoutMs?: number;
  /** Keep stdout/stderr for the result and for iteration from the start; default true. */
  keepOutput?: boolean;
  /** Throw `CommandExitError` when the command fails; default true. */
  reject?: boolean;
}

/** A process the agent is running. */
export interface ProcessInfo {
  pid: number;
  tag?: string;
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

export function toArgv(spec: CommandSpec): string[] {
  if (typeof spec === "string") return ["/bin/sh", "-c", spec];
  if (Array.isArray(spec)) return spec;
  return [spec.cmd, ...(spec.args ?? [])];
}

/** Runs commands in the agent: `agent.commands`. */
export class Commands {
  readonly client: Client<typeof Process>;

  constructor(private readonly connection: Connection) {
    this.client = createClient(Process, connection.transport);
  }

  /** Runs a command to the end and returns its output and exit code. */
  async run(spec: CommandSpec, options: CommandOptions = {}): Promise<CommandResult> {
    const handle = await this.start(spec, options);
    return handle.wait();
  }

  /** Starts a command and returns once the agent reports its pid. */
  async start(spec: CommandSpec, options: CommandOptions = {}): Promise<CommandHandle> {
    const argv = toArgv(spec);
    if (argv.length === 0 || !argv[0]) throw new TypeError("commands.start: the command is empty");
    const headers = this.connection.headers(options.user);
    const abort = new AbortController();
    const log = new OutputLog(options.keepOutput ?? true);
    const stdinOpen = options.stdin !== undefined && options.stdin !== false;
    const what = `start ${argv[0]}`;
    const stream = serverStream(
      this.connection,
      Process.method.start,
      {
        process: { cmd: argv[0], args: argv.slice(1), envs: options.envs ?? {}, cwd: options.cwd },
        tag: options.tag,
        stdin: stdinOpen,
      },
      { headers, signal: abort.signal },
    );
    const events = new ProcessEvents(stream, this.outputRouter(log, options), (err) =>
      toTetherError(err, what, this.connection.address),
    );
    events.exit.then(
      () => log.close(),
      () => log.close(),
    );
    const pid = await events.pid;
    const handle = new CommandHandle(pid, {
      client: this.client,
      headers,
      address: this.connection.address,
      argv,
      events,
      log,
      abort,
      reject: options.reject ?? true,
      timeoutMs: options.timeoutMs,
    });
    if (stdinOpen && options.stdin !== true) handle.pipeStdin(options.stdin as InputSource);
    return handle;
  }

  /** Re-attaches to a running (or recently ended) process by pid. */
  async connect(
    pid: number,
    options: Omit<CommandOptions, "stdin" | "envs" | "cwd" | "tag"> = {},
  ): Promise<CommandHandle> {
    const headers = this.connection.headers(options.user);
    const abort = new AbortController();
    const log = new OutputLog(options.keepOutput ?? true);
    const stream = serverStream(
      this.connection,
      Process.method.connect,
      { process: { selector: { case: "pid", value: pid } } },
      { headers, signal: abort.signal },
    );
    const events = new ProcessEvents(
      stream,
      this.outputRouter(log, options),
      (err) => toTetherError(err, `connect to process ${pid}`, this.connection.address),
      pid,
    );
    events.exit.then(
      () => log.close(),
      () => log.close(),
    );
    return new CommandHandle(pid, {
      client: this.client,
      headers,
      address: this.connection.address,
      argv: [`pid ${pid}`],
      events,
      log,
      abort,
      reject: options.reject ?? true,
      timeoutMs: options.timeoutMs,
    });
  }

  /** The processes the agent runs now. */
  async list(options: { user?: string } = {}): Promise<ProcessInfo[]> {
    try {
      const { processes } = await this.client.list({}, { headers: this.connection.headers(options.user) });
      return processes.map((p) => ({
        pid: p.pid,
        ...(p.tag !== undefined ? { tag: p.tag } : {}),
        cmd: p.config?.cmd ?? "",
        args: p.config?.args ?? [],
        envs: p.config?.envs ?? {},
        ...(p.config?.cwd !== undefined ? { cwd: p.config.cwd } : {}),
      }));
    } catch (err) {
      throw toTetherError(err, "list processes", this.connection.address);
    }
  }

  /** Sends SIGKILL (or SIGTERM) to a process by pid. */
  async kill(pid: number, signal: KillSignal = "SIGKILL"): Promise<void> {
    try {
      await this.client.sendSignal(
        {
          process: { selector: { case: "pid", value: pid } },
          signal: signal === "SIGTERM" ? Signal.SIGTERM : Signal.SIGKILL,
        },
        { headers: this.connection.headers() },
      );
    } catch (err) {
      throw toTetherError(err, `kill ${pid}`, this.connection.address);
    }
  }

  private outputRouter(log: OutputLog, options: Pick<CommandOptions, "onStdout" | "onStderr">) {
    return async (chunk: OutputChunk): Promise<void> => {
      log.push(chunk);
      if (chunk.kind === "stdout") await options.onStdout?.(chunk.data);
      else if (chunk.kind === "stderr") await options.onStderr?.(chunk.data);
    };
  }
}
