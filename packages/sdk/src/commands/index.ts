import { type Client, createClient } from "@connectrpc/connect";
import { Exec } from "@tether/protocol/exec";
import { Process } from "@tether/protocol/process";
import type { Connection } from "../connection.js";
import { toTetherError } from "../errors.js";
import { serverStream } from "../server-stream.js";
import { type OutputChunk, OutputLog } from "./events.js";
import { ExecEvents, type StreamOffsets, splitExecOutput } from "./exec-events.js";
import { CommandHandle, type CommandResult, type KillSignal, type SignalName } from "./handle.js";
import type { InputSource } from "./input.js";

export type { OutputChunk, OutputKind } from "./events.js";
export type { DroppedOutput, StreamOffsets } from "./exec-events.js";
export type { CommandResult, KillSignal, SignalName } from "./handle.js";
export { CommandHandle } from "./handle.js";
export type { InputSource } from "./input.js";
export { type ExitReasonName, type ProcessExit, shellExitCode, signalFromStatus } from "./status.js";

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
  /**
   * The agent kills the command's process group after this long (SIGTERM, then SIGKILL
   * after `killGraceMs`), even if this client went away; it then fails as timed out.
   */
  timeoutMs?: number;
  /** Likewise, when the command printed nothing (stdout or stderr) for this long. */
  idleTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL when a timeout fires; the agent's default is 2 s. */
  killGraceMs?: number;
  /**
   * An idempotency key: starting again with the same key attaches to the process the
   * first start made (replaying its output) instead of starting another one.
   */
  key?: string;
  /** Bytes of output the agent keeps per stream for `attach` to replay; default 1 MiB. */
  logLimitBytes?: number;
  /** Keep stdout/stderr for the result and for iteration from the start; default true. */
  keepOutput?: boolean;
  /** Throw `CommandExitError` when the command fails; default true. */
  reject?: boolean;
}

/** Options of `connect` and `attach`. */
export type AttachOptions = Omit<
  CommandOptions,
  "stdin" | "envs" | "cwd" | "tag" | "key" | "timeoutMs" | "idleTimeoutMs" | "killGraceMs" | "logLimitBytes"
>;

function milliseconds(ms: number | undefined): bigint {
  if (ms === undefined) return 0n;
  if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`expected a duration in ms >= 0, got ${ms}`);
  // 0 means "no limit" on the wire; a limit of 0 ms is the smallest one instead.
  return BigInt(Math.max(1, Math.ceil(ms)));
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
  /** The Process service on the connection for bulk sent to the agent: StreamInput. */
  readonly inputClient: Client<typeof Process>;
  readonly exec: Client<typeof Exec>;

  constructor(private readonly connection: Connection) {
    this.client = createClient(Process, connection.transport);
    this.inputClient = createClient(Process, connection.upstreamTransport);
    this.exec = createClient(Exec, connection.transport);
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
      Exec.method.start,
      {
        process: { cmd: argv[0], args: argv.slice(1), envs: options.envs ?? {}, cwd: options.cwd },
        tag: options.tag,
        stdin: stdinOpen,
        key: options.key,
        timeoutMs: milliseconds(options.timeoutMs),
        idleTimeoutMs: milliseconds(options.idleTimeoutMs),
        killGraceMs: milliseconds(options.killGraceMs),
        logLimitBytes: options.logLimitBytes ? BigInt(options.logLimitBytes) : 0n,
      },
      { headers, signal: abort.signal, split: splitExecOutput },
    );
    const events = new ExecEvents(stream, this.outputRouter(log, options), (err) =>
      toTetherError(err, what, this.connection.address),
    );
    events.exit.then(
      () => log.close(),
      () => log.close(),
    );
    const pid = await events.pid;
    const handle = new CommandHandle(pid, {
      client: this.client,
      inputClient: this.inputClient,
      exec: this.exec,
      key: options.key,
      headers,
      address: this.connection.address,
      argv,
      events,
      log,
      abort,
      reject: options.reject ?? true,
    });
    // A reused key attaches to a process whose input is not ours to feed.
    if (stdinOpen && options.stdin !== true && !events.existing) handle.pipeStdin(options.stdin as InputSource);
    return handle;
  }

  /** Re-attaches to a running (or recently ended) process by pid, following its output from now on. */
  async connect(pid: number, options: AttachOptions = {}): Promise<CommandHandle> {
    return this.attach(pid, { ...options, liveOnly: true });
  }

  /**
   * Re-attaches to a process (by pid, or by the key or tag it was started with): replays
   * the output the agent still keeps from `from` (default: from the start), then follows
   * it live. Output the agent no longer had is listed in `handle.dropped`.
   */
  async attach(
    target: number | { key: string } | { tag: string },
    options: AttachOptions & { from?: Partial<StreamOffsets>; liveOnly?: boolean } = {},
  ): Promise<CommandHandle> {
    const headers = this.connection.headers(options.user);
    const abort = new AbortController();
    const log = new OutputLog(options.keepOutput ?? true);
    const ref =
      typeof target === "number"
        ? { case: "pid" as const, value: target }
        : "key" in target
          ? { case: "key" as const, value: target.key }
          : { case: "tag" as const, value: target.tag };
    const what = `attach to process ${ref.case === "pid" ? ref.value : `${ref.case} "${ref.value}"`}`;
    const from = options.from ?? {};
    const stream = serverStream(
      this.connection,
      Exec.method.attach,
      {
        process: { ref },
        from: { stdout: BigInt(from.stdout ?? 0), stderr: BigInt(from.stderr ?? 0), pty: BigInt(from.pty ?? 0) },
        liveOnly: options.liveOnly ?? false,
      },
      { headers, signal: abort.signal, split: splitExecOutput },
    );
    const events = new ExecEvents(
      stream,
      this.outputRouter(log, options),
      (err) => toTetherError(err, what, this.connection.address),
      from,
    );
    events.exit.then(
      () => log.close(),
      () => log.close(),
    );
    const pid = await events.pid;
    return new CommandHandle(pid, {
      client: this.client,
      inputClient: this.inputClient,
      exec: this.exec,
      ...(ref.case === "key" ? { key: ref.value } : {}),
      headers,
      address: this.connection.address,
      argv: [`pid ${pid}`],
      events,
      log,
      abort,
      reject: options.reject ?? true,
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

  /** Sends a signal (SIGKILL unless named) to a process's whole group, by pid. */
  async kill(pid: number, signal: KillSignal | SignalName = "SIGKILL"): Promise<void> {
    try {
      await this.exec.signal(
        { process: { ref: { case: "pid", value: pid } }, signal, group: true },
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
