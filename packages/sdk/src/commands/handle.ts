import type { Client } from "@connectrpc/connect";
import { type Process, Signal } from "@tether/protocol/process";
import { AgentUnavailableError, AuthenticationError, CommandExitError, toTetherError } from "../errors.js";
import type { OutputChunk, OutputLog, ProcessEvents } from "./events.js";
import { type InputSource, processInput, streamInput, toBytes } from "./input.js";
import type { ProcessExit } from "./status.js";

/** What a finished command returns. */
export interface CommandResult extends ProcessExit {
  /** Everything the command printed on stdout (empty when output is not kept). */
  stdout: string;
  stderr: string;
}

export type KillSignal = "SIGTERM" | "SIGKILL";

/** What a handle needs from the Commands module that created it. */
export interface HandleContext {
  client: Client<typeof Process>;
  headers: Record<string, string>;
  address: string;
  argv: string[];
  events: ProcessEvents;
  log: OutputLog;
  /** Aborts the event stream (not the process). */
  abort: AbortController;
  /** Throw CommandExitError from wait() on failure; default true. */
  reject: boolean;
  timeoutMs?: number;
}

/** A command running in the agent: its pid, its output, and ways to talk to it. */
export class CommandHandle implements AsyncIterable<OutputChunk> {
  private timedOut = false;
  private stdinError: unknown;
  private readonly timer?: NodeJS.Timeout;

  constructor(
    readonly pid: number,
    private readonly ctx: HandleContext,
  ) {
    if (ctx.timeoutMs !== undefined) {
      this.timer = setTimeout(() => {
        this.timedOut = true;
        this.kill("SIGKILL").catch(() => {});
      }, ctx.timeoutMs);
    }
    ctx.events.exit.then(
      () => clearTimeout(this.timer),
      () => clearTimeout(this.timer),
    );
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
    const failed = exit.exitCode !== 0 || exit.signal !== undefined || exit.error !== undefined || this.timedOut;
    if (failed && this.ctx.reject) {
      throw new CommandExitError({ argv: this.argv, ...result, timedOut: this.timedOut });
    }
    return result;
  }

  /** Sends a signal to the command (the agent supports SIGTERM and SIGKILL). */
  async kill(signal: KillSignal = "SIGKILL"): Promise<void> {
    try {
      await this.ctx.client.sendSignal(
        { process: this.selector(), signal: signal === "SIGTERM" ? Signal.SIGTERM : Signal.SIGKILL },
        { headers: this.ctx.headers },
      );
    } catch (err) {
      throw toTetherError(err, `kill ${this.pid}`, this.ctx.address);
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
      await streamInput(this.ctx.client, this.pid, "stdin", source, this.ctx.headers);
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
    clearTimeout(this.timer);
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
