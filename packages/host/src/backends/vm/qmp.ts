import net from "node:net";
import { TetherHostError } from "../../errors.js";

/**
 * A small typed client of the QEMU Machine Protocol over a unix socket: line-delimited
 * JSON, a greeting, `qmp_capabilities`, then one command at a time answered by `return`
 * or `error`, with asynchronous `event`s in between. Ours, not an npm one: the only
 * package (qemu-qmp) has one release and no types, and the protocol is this small.
 */

/** What QEMU answered a command with instead of `return`. */
export class QmpCommandError extends TetherHostError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${description}`);
  }
}

/** The QMP socket could not be reached, or closed before an answer came. */
export class QmpConnectionError extends TetherHostError {}

/** An asynchronous event (STOP, RESUME, SHUTDOWN, MIGRATION ...). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** `query-status`'s answer. */
export interface QmpStatus {
  running: boolean;
  /** "running", "paused", "postmigrate", "inmigrate", "shutdown" ... */
  status: string;
}

/** `query-migrate`'s answer, the fields we read. */
export interface QmpMigrationInfo {
  /** "setup", "active", "completed", "failed", "cancelled" ...; absent before any migration. */
  status?: string;
  "error-desc"?: string;
  ram?: { transferred: number; total: number; duplicate?: number; normal?: number };
  "total-time"?: number;
  downtime?: number;
}

/** The commands Tether sends, with their arguments and answers. */
export interface QmpCommands {
  qmp_capabilities: { args: Record<string, never>; ret: Record<string, never> };
  "query-status": { args: Record<string, never>; ret: QmpStatus };
  "query-version": {
    args: Record<string, never>;
    ret: { qemu: { major: number; minor: number; micro: number }; package: string };
  };
  stop: { args: Record<string, never>; ret: Record<string, never> };
  cont: { args: Record<string, never>; ret: Record<string, never> };
  quit: { args: Record<string, never>; ret: Record<string, never> };
  system_powerdown: { args: Record<string, never>; ret: Record<string, never> };
  "migrate-set-parameters": {
    args: { "max-bandwidth"?: number; "downtime-limit"?: number };
    ret: Record<string, never>;
  };
  migrate: { args: { uri: string }; ret: Record<string, never> };
  "query-migrate": { args: Record<string, never>; ret: QmpMigrationInfo };
}

type Pending = { command: string; resolve: (value: unknown) => void; reject: (err: Error) => void };

/** One QMP session. `connect` negotiates capabilities; `close` ends it (QEMU keeps running). */
export class QmpClient {
  /** The greeting's QEMU version. */
  version?: { major: number; minor: number; micro: number };
  private buffer = "";
  private readonly pending: Pending[] = [];
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private closedError?: Error;

  private constructor(private readonly socket: net.Socket) {}

  /** Connects to QEMU's `-qmp unix:PATH,server=on` socket and leaves capabilities negotiation done. */
  static async connect(socketPath: string, timeoutMs = 10_000): Promise<QmpClient> {
    const socket = net.connect(socketPath);
    const client = new QmpClient(socket);
    const greeting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new QmpConnectionError(`no QMP greeting on ${socketPath} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      client.pending.push({
        command: "(greeting)",
        resolve: (value) => {
          clearTimeout(timer);
          client.version = (value as { QMP?: { version?: { qemu?: QmpClient["version"] } } }).QMP?.version?.qemu;
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => client.receive(text));
    socket.on("error", (err) => client.fail(new QmpConnectionError(`QMP socket ${socketPath}: ${err.message}`)));
    socket.on("close", () => client.fail(new QmpConnectionError(`QMP socket ${socketPath} closed`)));
    try {
      await greeting;
      await client.execute("qmp_capabilities", {});
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return client;
  }

  /** Sends one command; resolves with its `return`, rejects with QmpCommandError on `error`. */
  execute<C extends keyof QmpCommands>(command: C, args: QmpCommands[C]["args"]): Promise<QmpCommands[C]["ret"]> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      this.pending.push({ command, resolve: resolve as (value: unknown) => void, reject });
      const message = Object.keys(args).length > 0 ? { execute: command, arguments: args } : { execute: command };
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first event named `name` (or rejects when the session ends first). */
  waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new QmpConnectionError(`no QMP event ${name} within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onEvent((event) => {
        if (event.event !== name) return;
        clearTimeout(timer);
        off();
        resolve(event);
      });
    });
  }

  /** Resolves once QEMU closed the session (after `quit`, or when it exits). */
  closed(): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("close", () => resolve()));
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(text: string): void {
    this.buffer += text;
    for (let newline = this.buffer.indexOf("\n"); newline !== -1; newline = this.buffer.indexOf("\n")) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof message.event === "string") {
        for (const listener of [...this.listeners]) listener(message as unknown as QmpEvent);
        continue;
      }
      // QEMU answers in order, one command at a time; the greeting comes first.
      const waiting = this.pending.shift();
      if (!waiting) continue;
      if ("QMP" in message || "return" in message) {
        waiting.resolve("QMP" in message ? message : message.return);
      } else if (message.error) {
        const error = message.error as { class?: string; desc?: string };
        waiting.reject(new QmpCommandError(waiting.command, error.class ?? "Error", error.desc ?? line));
      }
    }
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    for (const waiting of this.pending.splice(0)) waiting.reject(err);
  }
}
