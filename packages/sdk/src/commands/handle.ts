import type { Client } from "@connectrpc/connect";
import type { Exec } from "@tether/protocol/exec";
import type { Process } from "@tether/protocol/process";
import { AgentUnavailableError, AuthenticationError, CommandExitError, toTetherError } from "../errors.js";
import type { OutputChunk, OutputLog } from "./events.js";
import type { DroppedOutput, ExecEvents, StreamOffsets } from "./exec-events.js";
import { type InputSource, processInput, streamInput, toBytes } from "./input.js";
import type { ProcessExit } from "./status.js";

/** What a finished command returns. */
export interface CommandResult extends ProcessExit {
  /** Everything the command printed on stdout (empty when output is not kept). */
  stdout: string;
  stderr: string;
}

export type KillSignal = "SIGTERM" | "SIGKILL";

/** A signal name from signal(7), with or without "SIG": "INT", "SIGUSR1", "WINCH". */
export type SignalName = string;

/** What a handle needs from the Commands module that created it. */
export interface HandleContext {
  client: Client<typeof Process>;
  /** For StreamInput: on the connection for bulk sent to the agent. */
  inputClient: Client<typeof Process>;
  exec: Client<typeof Exec>;
  /** The start key, if the command was started with one. */
  key?: string;
  headers: Record<string, string>;
  address: string;
  argv: string[];
  events: ExecEvents;
  log: OutputLog;
  /** Aborts the event stream (not the process). */
  abort: AbortController;
  /** Throw CommandExitError from wait() on failure; default true. */
  reject: boolean;
}

/** A command running in the agent: its pid, its output, and ways to talk to it. */
export class CommandHandle implements AsyncIterable<OutputChunk> {
  private stdinError: unknown;

  constructor(
    readonly pid: number,
    private readonly ctx: HandleContext,
  ) {}

  /** The key the command was started with, if any. */
  get key(): string | undefined {
    return this.ctx.key;
  }

  /** True when the process existed before this handle (a reused key, or an attach). */
  get existing(): boolean {
    return this.ctx.events.existing;
  }

  /**
   * The next byte offset of each output stream: everything before it was received (or
   * reported dropped). Pass it to `commands.attach` to resume exactly here.
   */
  get offsets(): StreamOffsets {
    return { ...this.ctx.events.offsets };
  }

  /** Output the agent no longer had when this handle asked for it (its log overflowed). */
  get dropped(): DroppedOutput[] {
    return [...this.ctx.events.dropped];
  }

  /** The command line as it was started. */
  get argv(): string[] {
    return this.ctx.argv;
  }

  /** stdout printed so far (when output is kept). */
  get stdout(): string {
    return this.ctx.log.text("stdout");
  }

  get stderr(): string {
    return this.ctx.log.text("stderr");
  }

  /**
   * Waits for the command to end. Throws `CommandExitError` when it exits non-zero,
   * dies from a signal or times out, unless it was started with `reject: false`.
   */
  async wait(): Promise<CommandResult> {
    const exit = await this.ctx.events.exit;
    if (this.stdinError !== undefined) throw this.stdinError;
    const result: CommandResult = { ...exit, stdout: this.stdout, stderr: this.stderr };
    const timedOut = exit.reason === "timeout" || exit.reason === "idle_timeout";
    const failed = exit.exitCode !== 0 || exit.signal !== undefined || exit.error !== undefined || timedOut;
    if (failed && this.ctx.reject) {
      throw new CommandExitError({ argv: this.argv, ...result, timedOut });
    }
    return result;
  }

  /** Kills the command's whole process group (SIGKILL unless another signal is named). */
  async kill(signal: KillSignal | SignalName = "SIGKILL"): Promise<void> {
    await this.signal(signal, { group: true });
  }

  /**
   * Sends any signal by name to the command alone, or with `group` to its whole process
   * group (children and grandchildren that did not leave it). Unknown names are refused.
   */
  async signal(signal: SignalName, options: { group?: boolean } = {}): Promise<void> {
    try {
      await this.ctx.exec.signal(
        { process: { ref: { case: "pid", value: this.pid } }, signal, group: options.group ?? false },
        { headers: this.ctx.headers },
      );
    } catch (err) {
      throw toTetherError(err, `send ${signal} to ${this.pid}`, this.ctx.address);
    }
  }

  /** Writes to the command's stdin (it must have been started with `stdin: true`). */
  async sendStdin(data: string | Uint8Array): Promise<void> {
    try {
      await this.ctx.client.sendInput(
        { process: this.selector(), input: { input: processInput("stdin", toBytes(data)) } },
        { headers: this.ctx.headers },
      );
    } catch (err) {
      throw toTetherError(err, `send stdin to ${this.pid}`, this.ctx.address);
    }
  }

  /** Streams a whole source into stdin over one call; see also `closeStdin`. */
  async writeStdin(source: InputSource): Promise<void> {
    try {
      await streamInput(this.ctx.inputClient, this.pid, "stdin", source, this.ctx.headers);
    } catch (err) {
      throw toTetherError(err, `stream stdin to ${this.pid}`, this.ctx.address);
    }
  }

  /** Closes stdin, so a command reading it sees end-of-file. */
  async closeStdin(): Promise<void> {
    try {
      await this.ctx.client.closeStdin({ process: this.selector() }, { headers: this.ctx.headers });
    } catch (err) {
      throw toTetherError(err, `close stdin of ${this.pid}`, this.ctx.address);
    }
  }

  /** Stops receiving output; the command keeps running in the agent. */
  disconnect(): void {
    this.ctx.abort.abort();
  }

  /** Output chunks (stdout and stderr interleaved as they arrived) until the command ends. */
  [Symbol.asyncIterator](): AsyncIterator<OutputChunk> {
    return this.ctx.log.iterate();
  }

  /** Feeds stdin from a source in the background, then closes it; used by `start`. */
  pipeStdin(source: InputSource): void {
    this.writeStdin(source)
      .then(() => this.closeStdin())
      .catch((err: unknown) => {
        // A command may exit without reading all its input: the agent then refuses the
        // rest, which is no failure. A lost connection or a refused token is one.
        if (err instanceof AgentUnavailableError || err instanceof AuthenticationError) this.stdinError = err;
        this.closeStdin().catch(() => {});
      });
  }

  private selector() {
    return { selector: { case: "pid" as const, value: this.pid } };
  }
}
