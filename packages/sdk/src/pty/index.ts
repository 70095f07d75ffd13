import type { Client } from "@connectrpc/connect";
import { Process, Signal } from "@tether/protocol/process";
import { ProcessEvents } from "../commands/events.js";
import type { Commands } from "../commands/index.js";
import { type InputSource, processInput, streamInput, toBytes } from "../commands/input.js";
import type { ProcessExit } from "../commands/status.js";
import type { Connection } from "../connection.js";
import { toTetherError } from "../errors.js";
import { serverStream } from "../server-stream.js";

export interface PtySize {
  cols: number;
  rows: number;
}

export interface PtyOptions extends PtySize {
  /** Called with every piece of terminal output; a returned promise is awaited. */
  onData: (data: Uint8Array) => void | Promise<void>;
  /** What to run; default `/bin/sh -l`. */
  argv?: string[];
  /** Extra environment; TERM defaults to xterm-256color. */
  envs?: Record<string, string>;
  cwd?: string;
  user?: string;
  tag?: string;
}

/** A process attached to a pseudo-terminal in the agent. */
export class PtyHandle {
  constructor(
    readonly pid: number,
    private readonly client: Client<typeof Process>,
    /** For StreamInput: on the connection for bulk sent to the agent. */
    private readonly inputClient: Client<typeof Process>,
    private readonly headers: Record<string, string>,
    private readonly address: string,
    private readonly events: ProcessEvents,
    private readonly abort: AbortController,
  ) {}

  /** Types into the terminal (keystrokes, pasted text, control bytes like 0x03). */
  async sendInput(data: string | Uint8Array): Promise<void> {
    try {
      await this.client.sendInput(
        { process: this.selector(), input: { input: processInput("pty", toBytes(data)) } },
        { headers: this.headers },
      );
    } catch (err) {
      throw toTetherError(err, `send input to pty ${this.pid}`, this.address);
    }
  }

  /** Streams a whole source into the terminal over one call (e.g. a local tty's keystrokes). */
  async streamInput(source: InputSource): Promise<void> {
    try {
      await streamInput(this.inputClient, this.pid, "pty", source, this.headers);
    } catch (err) {
      throw toTetherError(err, `stream input to pty ${this.pid}`, this.address);
    }
  }

  /** Changes the terminal size; the process gets SIGWINCH. */
  async resize(size: PtySize): Promise<void> {
    try {
      await this.client.update({ process: this.selector(), pty: { size } }, { headers: this.headers });
    } catch (err) {
      throw toTetherError(err, `resize pty ${this.pid}`, this.address);
    }
  }

  /** Kills the terminal's process (SIGKILL unless SIGTERM is asked for). */
  async kill(signal: "SIGTERM" | "SIGKILL" = "SIGKILL"): Promise<void> {
    try {
      await this.client.sendSignal(
        { process: this.selector(), signal: signal === "SIGTERM" ? Signal.SIGTERM : Signal.SIGKILL },
        { headers: this.headers },
      );
    } catch (err) {
      throw toTetherError(err, `kill pty ${this.pid}`, this.address);
    }
  }

  /** Waits for the process to end. Unlike a command, a non-zero exit is not thrown. */
  wait(): Promise<ProcessExit> {
    return this.events.exit;
  }

  /** Stops receiving output; the process keeps running. */
  disconnect(): void {
    this.abort.abort();
  }

  private selector() {
    return { selector: { case: "pid" as const, value: this.pid } };
  }
}

/** Pseudo-terminals in the agent: `agent.pty`. */
export class Pty {
  constructor(
    private readonly connection: Connection,
    private readonly commands: Commands,
  ) {}

  /** Starts a process on a new terminal of the given size. */
  async create(options: PtyOptions): Promise<PtyHandle> {
    const argv = options.argv ?? ["/bin/sh", "-l"];
    if (argv.length === 0 || !argv[0]) throw new TypeError("pty.create: argv is empty");
    const client = this.commands.client;
    const headers = this.connection.headers(options.user);
    const abort = new AbortController();
    const stream = serverStream(
      this.connection,
      Process.method.start,
      {
        process: {
          cmd: argv[0],
          args: argv.slice(1),
          envs: { TERM: "xterm-256color", ...options.envs },
          cwd: options.cwd,
        },
        pty: { size: { cols: options.cols, rows: options.rows } },
        tag: options.tag,
      },
      { headers, signal: abort.signal },
    );
    const events = new ProcessEvents(
      stream,
      (chunk) => options.onData(chunk.data),
      (err) => toTetherError(err, `pty ${argv[0]}`, this.connection.address),
    );
    const pid = await events.pid;
    return new PtyHandle(pid, client, this.commands.inputClient, headers, this.connection.address, events, abort);
  }
}
