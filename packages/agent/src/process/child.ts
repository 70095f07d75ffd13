import { readSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import type * as NodePty from "node-pty";
import { type ExitStatus, exitStatus } from "./exit-status.js";
import { checkLaunchable, explainSpawnFailure, type LaunchSpec } from "./launch.js";
import type { OutputKind } from "./output-log.js";
import { type PipeProcess, spawnPipes } from "./spawner.js";

/**
 * After the direct child exits, how long its pipes may stay open before the end event
 * goes out anyway: a daemonised grandchild can hold stdout forever.
 */
const PIPE_DRAIN_GRACE_MS = 1000;

export type { OutputKind };

/** Where a child reports what it does. Called in order: output*, then end once. */
export interface ChildSink {
  onOutput(kind: OutputKind, chunk: Uint8Array): void;
  onEnd(status: ExitStatus): void;
}

/** A spawned process: a pipe child or a PTY, in its own process group. */
export interface Child {
  readonly pid: number;
  readonly isPty: boolean;
  /** Writes to stdin (or the terminal); resolves once the kernel took it or it was queued without backpressure. */
  write(data: Uint8Array): Promise<void>;
  /** Sends EOF on stdin. Not possible for a PTY (send 0x04 instead). */
  closeStdin(): void;
  resize(cols: number, rows: number): void;
  /** Signals the child's whole process group, or with `group` false the child alone. */
  signal(signal: NodeJS.Signals, group?: boolean): void;
  /** Stops (and restarts) reading output while consumers catch up. */
  pauseOutput(): void;
  resumeOutput(): void;
}

/** Spawns the child a spec describes; rejects with a Connect error saying why it could not. */
export async function spawnChild(spec: LaunchSpec, sink: ChildSink): Promise<Child> {
  if (spec.pty) {
    await checkLaunchable(spec);
    return new PtyChild(await loadNodePty(), spec, spec.pty, sink);
  }
  if (spec.file !== spec.config.cmd) await checkLaunchable(spec);
  return PipeChild.spawn(spec, sink);
}

let nodePty: Promise<typeof NodePty> | undefined;

/**
 * node-pty is loaded on the first PTY: every fork copies the agent's page tables, so
 * memory the agent does not need makes every exec slower.
 */
function loadNodePty(): Promise<typeof NodePty> {
  nodePty ??= import("node-pty");
  return nodePty;
}

/**
 * Sends a signal to a process group. While the leader is not yet reaped its pid is ours,
 * so if it left the group (setsid) it still gets the signal alone; once reaped the pid
 * may belong to someone else and only the group is tried.
 */
export function signalGroup(pid: number, signal: NodeJS.Signals, leaderAlive: boolean, group = true): void {
  if (!group) {
    signalLeader(pid, signal, leaderAlive);
    return;
  }
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    if (!leaderAlive) return;
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone: nothing left to signal.
    }
  }
}

/** Signals the child alone; refused once it was reaped, when its pid may be someone else's. */
function signalLeader(pid: number, signal: NodeJS.Signals, leaderAlive: boolean): void {
  if (!leaderAlive) {
    throw new ConnectError(
      `process ${pid} has exited (its output is still open): signal its group instead`,
      Code.FailedPrecondition,
    );
  }
  process.kill(pid, signal);
}

class PipeChild implements Child {
  readonly isPty = false;
  readonly pid: number;
  private exit: ExitStatus | undefined;
  private openStreams = 0;
  private paused = false;
  private graceTimer: NodeJS.Timeout | undefined;
  private ended = false;

  private constructor(
    private readonly proc: PipeProcess,
    private readonly sink: ChildSink,
  ) {
    this.pid = proc.pid;
    for (const [kind, stream] of [
      ["stdout", proc.stdout],
      ["stderr", proc.stderr],
    ] as const) {
      this.openStreams++;
      stream.on("data", (chunk: Buffer) => sink.onOutput(kind, chunk));
      stream.once("close", () => {
        this.openStreams--;
        this.maybeEnd();
      });
    }
    // EPIPE when writing to a child that stopped reading is reported to the writer.
    proc.stdin?.on("error", () => {});
    proc.onExit((code, signal) => {
      this.exit = exitStatus(code, signal);
      if (this.openStreams > 0) this.armGrace();
      this.maybeEnd();
    });
  }

  static async spawn(spec: LaunchSpec, sink: ChildSink): Promise<Child> {
    try {
      return new PipeChild(await spawnPipes(spec), sink);
    } catch (err) {
      throw await explainSpawnFailure(spec, err as NodeJS.ErrnoException);
    }
  }

  async write(data: Uint8Array): Promise<void> {
    const stdin = this.proc.stdin;
    if (!stdin) throw new ConnectError(`process ${this.pid} was started without stdin`, Code.FailedPrecondition);
    if (stdin.writableEnded || stdin.destroyed) {
      throw new ConnectError(`stdin of process ${this.pid} is closed`, Code.FailedPrecondition);
    }
    if (stdin.write(data)) return;
    // Let a child that reads slowly slow the sender down instead of queueing in memory.
    await new Promise<void>((resolve) => {
      const done = () => {
        stdin.off("drain", done);
        stdin.off("close", done);
        resolve();
      };
      stdin.on("drain", done);
      stdin.on("close", done);
    });
  }

  closeStdin(): void {
    this.proc.stdin?.end();
  }

  resize(): void {
    throw new ConnectError(`process ${this.pid} has no PTY to resize`, Code.FailedPrecondition);
  }

  signal(signal: NodeJS.Signals, group = true): void {
    signalGroup(this.pid, signal, this.exit === undefined, group);
  }

  pauseOutput(): void {
    this.paused = true;
    this.proc.stdout.pause();
    this.proc.stderr.pause();
  }

  resumeOutput(): void {
    this.paused = false;
    this.proc.stdout.resume();
    this.proc.stderr.resume();
  }

  private armGrace(): void {
    this.graceTimer = setTimeout(() => {
      // Output still waiting for a slow consumer is not a stuck grandchild: keep waiting.
      if (this.paused) return this.armGrace();
      for (const stream of [this.proc.stdout, this.proc.stderr]) stream.destroy();
    }, PIPE_DRAIN_GRACE_MS);
    this.graceTimer.unref();
  }

  private maybeEnd(): void {
    if (this.ended || !this.exit || this.openStreams > 0) return;
    this.ended = true;
    clearTimeout(this.graceTimer);
    this.proc.stdin?.destroy();
    this.sink.onEnd(this.exit);
  }
}

class PtyChild implements Child {
  readonly isPty = true;
  readonly pid: number;
  private readonly term: NodePty.IPty;
  private exited = false;

  constructor(pty: typeof NodePty, spec: LaunchSpec, size: { cols: number; rows: number }, sink: ChildSink) {
    try {
      this.term = pty.spawn(spec.file, spec.args, {
        name: spec.env.TERM ?? "xterm-256color",
        cols: size.cols,
        rows: size.rows,
        cwd: spec.cwd,
        env: spec.env,
        // Raw bytes out, so multi-byte characters split across reads survive.
        encoding: null,
        uid: spec.ids?.uid,
        gid: spec.ids?.gid,
      });
    } catch (err) {
      throw new ConnectError(`cannot start a PTY for ${spec.config.cmd}: ${(err as Error).message}`, Code.Internal);
    }
    this.pid = this.term.pid;
    // With encoding null node-pty hands out Buffers, though its types say string.
    this.term.onData((chunk) => sink.onOutput("pty", chunk as unknown as Buffer));
    readRestBeforeDestroy(this.term, (chunk) => sink.onOutput("pty", chunk));
    // node-pty reports exit once the terminal's output is read to its end, or 200 ms after
    // the child's exit when it destroys the terminal (see readRestBeforeDestroy).
    this.term.onExit(({ exitCode, signal }) => {
      this.exited = true;
      sink.onEnd(exitStatus(exitCode, signal));
    });
  }

  async write(data: Uint8Array): Promise<void> {
    this.term.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength) as unknown as string);
  }

  closeStdin(): void {
    throw new ConnectError(
      `process ${this.pid} runs in a PTY: send 0x04 (Ctrl-D) as input instead of closing stdin`,
      Code.FailedPrecondition,
    );
  }

  resize(cols: number, rows: number): void {
    this.term.resize(cols, rows);
  }

  signal(signal: NodeJS.Signals, group = true): void {
    signalGroup(this.pid, signal, !this.exited, group);
  }

  pauseOutput(): void {
    this.term.pause();
  }

  resumeOutput(): void {
    this.term.resume();
  }
}

/** What node-pty 1.x keeps of a Unix terminal: its reader and the master's fd (non-blocking, node-pty sets it so). */
interface UnixTerminalInternals {
  _socket?: { destroyed: boolean; destroy(error?: Error): unknown; read(): unknown };
  _fd?: number;
}

/**
 * node-pty destroys a terminal's reader 200 ms after the child exits unless it has read the
 * terminal to its end by then; whatever is still unread is dropped. That happens to a reader
 * paused by a slow client, and to any reader when the event loop is busy past those 200 ms.
 * So before the reader is destroyed, what it buffered and what the terminal still holds are
 * handed on: the master fd is non-blocking, so reading it until EAGAIN (nothing more now) or
 * EIO (no writer left) never waits. node-pty versions without these fields keep their own behaviour.
 */
function readRestBeforeDestroy(term: NodePty.IPty, onOutput: (chunk: Buffer) => void): void {
  const { _socket: socket, _fd: fd } = term as unknown as UnixTerminalInternals;
  if (!socket || typeof fd !== "number") return;
  const destroy = socket.destroy.bind(socket);
  socket.destroy = (error?: Error) => {
    if (!socket.destroyed) {
      // Chunks read but held back by a pause: read() hands each to node-pty's data listeners.
      while (socket.read() !== null);
      const buffer = Buffer.allocUnsafe(64 * 1024);
      for (;;) {
        let n: number;
        try {
          n = readSync(fd, buffer);
        } catch {
          break;
        }
        if (n <= 0) break;
        onOutput(Buffer.from(buffer.subarray(0, n)));
      }
    }
    return destroy(error);
  };
}
