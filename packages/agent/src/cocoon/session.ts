import type { Socket } from "node:net";
import { constants } from "node:os";
import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { ProcessConfigSchema } from "@tether/protocol/process";
import { tokensEqual } from "../auth/access.js";
import type { AgentContext } from "../context.js";
import { type Child, spawnChild } from "../process/child.js";
import type { ExitStatus } from "../process/exit-status.js";
import { inheritedEnv } from "../process/inherited-env.js";
import { planLaunch } from "../process/launch.js";
import { type AgentFrame, encodeFrame, FrameError, FrameReader, parseFirstFrame, parseInputFrame } from "./frames.js";
import { type ReseedPaths, reseed } from "./reseed.js";

/**
 * Frame text read ahead of a command that does not take its stdin yet. Reading goes on
 * while a stdin write waits, since a paused socket never sees its peer leave; past this
 * much the socket is paused all the same, so a peer cannot make us buffer without bound.
 */
const MAX_QUEUED_INPUT_BYTES = 16 << 20;

/**
 * One cocoon-style session on a connected socket (vsock, unix or TCP alike): the first
 * frame says exec or reseed; an exec streams started, output and exactly one exit or
 * error. The child runs in its own process group, which gets SIGKILL when the session
 * ends for any reason, the peer going away included. Where the listener wants the access
 * token (TCP), `auth{token}` must come first while the agent has one.
 */
export class CocoonSession {
  private readonly reader = new FrameReader();
  private child: Child | undefined;
  private started = false;
  private authenticated = false;
  private finished = false;
  private queuedBytes = 0;
  private queued: AgentFrame[] = [];
  private work: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: AgentContext,
    private readonly socket: Socket,
    private readonly reseedPaths: ReseedPaths,
    private readonly requireToken = false,
  ) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => this.onEnd());
    socket.on("error", () => {});
    socket.on("close", () => {
      this.finished = true;
      this.killGroup();
    });
    socket.on("drain", () => this.child?.resumeOutput());
  }

  private onData(chunk: Buffer): void {
    if (this.finished) return;
    let lines: string[];
    try {
      lines = this.reader.push(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (lines.length === 0) return;
    const bytes = lines.reduce((sum, line) => sum + line.length, 0);
    this.queuedBytes += bytes;
    if (this.queuedBytes > MAX_QUEUED_INPUT_BYTES) this.socket.pause();
    // One frame at a time, in order.
    this.work = this.work
      .then(async () => {
        for (const line of lines) {
          if (this.finished) return;
          await this.onFrame(line);
        }
      })
      .catch((err) => this.fail(err))
      .finally(() => {
        this.queuedBytes -= bytes;
        if (!this.finished && this.socket.isPaused() && this.queuedBytes <= MAX_QUEUED_INPUT_BYTES / 2) {
          this.socket.resume();
        }
      });
  }

  /**
   * The peer shut its sending side. On TCP a half-close and a peer that went away look the
   * same (a FIN), so either ends the session: a running command is killed like on a
   * disconnect, and the error frame tells a client that only half-closed why (stdin_close
   * ends the input, not a half-close). Frames that came before, an exec or a reseed, are
   * handled first; a stdin write the command does not take is not waited for.
   */
  private onEnd(): void {
    const end = () =>
      this.fail(
        new FrameError(
          this.child || this.started
            ? "the client half-closed the connection: the command was killed (send stdin_close to end its input)"
            : "the connection ended before an exec or reseed frame",
        ),
      );
    if (this.child) end();
    else this.work = this.work.then(() => end());
  }

  private async onFrame(line: string): Promise<void> {
    if (!this.child) {
      if (this.started) return;
      const frame = await parseFirstFrame(line);
      const expected = this.ctx.state.accessToken;
      if (frame.type === "auth") {
        if (this.authenticated) throw new FrameError("auth was already sent; want exec or reseed");
        if (expected !== undefined && !tokensEqual(frame.token, expected)) {
          this.ctx.log.warn({ peer: this.socket.remoteAddress }, "cocoon: refused a session with a wrong access token");
          throw new FrameError("unauthenticated: wrong access token");
        }
        this.authenticated = true;
        return;
      }
      if (this.requireToken && expected !== undefined && !this.authenticated) {
        throw new FrameError('unauthenticated: this listener wants {"type":"auth","token":"..."} as the first frame');
      }
      this.started = true;
      if (frame.type === "reseed") {
        await reseed(Buffer.from(frame.data, "base64"), frame.regen_machine_id ?? false, this.reseedPaths);
        this.ctx.log.info({ regenMachineId: frame.regen_machine_id ?? false }, "cocoon reseed");
        this.finish({ type: "exit" });
        return;
      }
      await this.exec(frame.argv, frame.env ?? {});
      return;
    }
    const frame = await parseInputFrame(line);
    if (frame.type === "stdin_close") this.child.closeStdin();
    else await this.child.write(Buffer.from(frame.data, "base64")).catch(() => {});
  }

  private async exec(argv: string[], env: Record<string, string>): Promise<void> {
    const [cmd, ...args] = argv;
    // The agent's environment (less its own runtime variables), then the caller's.
    const envs = { ...inheritedEnv(process.env), ...env };
    const spec = planLaunch(
      { process: create(ProcessConfigSchema, { cmd, args, envs }), stdin: true },
      this.ctx.users.current,
      this.ctx.state,
      { kind: "inherit" },
    );
    const child = await spawnChild(spec, {
      onOutput: (kind, chunk) => {
        this.send({ type: kind === "stderr" ? "stderr" : "stdout", data: Buffer.from(chunk).toString("base64") });
      },
      onEnd: (status) => this.finish(exitFrame(status)),
    });
    this.child = child;
    if (this.finished || this.socket.destroyed) {
      this.killGroup();
      return;
    }
    this.write({ type: "started", pid: child.pid });
    for (const frame of this.queued) this.write(frame);
    this.queued = [];
  }

  /** Sends a frame once `started` went out (output may arrive before spawn returns). */
  private send(frame: AgentFrame): void {
    if (this.finished) return;
    if (!this.child) this.queued.push(frame);
    else this.write(frame);
  }

  private write(frame: AgentFrame): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    if (!this.socket.write(encodeFrame(frame))) this.child?.pauseOutput();
  }

  /** Sends the one terminal frame and ends the session. */
  private finish(frame: AgentFrame): void {
    if (this.finished) return;
    if (frame.type === "exit" && this.queued.length > 0) {
      for (const queued of this.queued) this.write(queued);
      this.queued = [];
    }
    this.finished = true;
    this.write(frame);
    this.socket.end();
    this.killGroup();
  }

  private fail(err: unknown): void {
    const message = err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err);
    if (!(err instanceof FrameError) && !(err instanceof ConnectError)) {
      this.ctx.log.warn({ err }, "cocoon session failed");
    }
    this.finish({ type: "error", message });
  }

  /** SIGKILL to the child's whole group; nothing is left behind but what left the group (a daemon). */
  private killGroup(): void {
    try {
      this.child?.signal("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** exit_code as the shell reports it: the code, or 128 + the signal's number; omitted when 0. */
function exitFrame(status: ExitStatus): AgentFrame {
  const code = status.exited ? status.exitCode : 128 + (status.signal ? constants.signals[status.signal] : 0);
  return code === 0 ? { type: "exit" } : { type: "exit", exit_code: code };
}
