import type { Socket } from "node:net";
import { constants } from "node:os";
import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { ProcessConfigSchema } from "@tether/protocol/process";
import type { AgentContext } from "../context.js";
import { type Child, spawnChild } from "../process/child.js";
import type { ExitStatus } from "../process/exit-status.js";
import { inheritedEnv } from "../process/inherited-env.js";
import { planLaunch } from "../process/launch.js";
import { type AgentFrame, encodeFrame, FrameError, FrameReader, parseFirstFrame, parseInputFrame } from "./frames.js";
import { type ReseedPaths, reseed } from "./reseed.js";

/**
 * One cocoon-style session on a connected socket (vsock, unix or TCP alike): the first
 * frame says exec or reseed; an exec streams started, output and exactly one exit or
 * error. The child runs in its own process group, which gets SIGKILL when the session
 * ends for any reason, the peer going away included.
 */
export class CocoonSession {
  private readonly reader = new FrameReader();
  private child: Child | undefined;
  private started = false;
  private finished = false;
  private queued: AgentFrame[] = [];
  private work: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: AgentContext,
    private readonly socket: Socket,
    private readonly reseedPaths: ReseedPaths,
  ) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
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
    // One frame at a time, in order: stop reading until these are handled.
    this.socket.pause();
    this.work = this.work
      .then(async () => {
        for (const line of lines) {
          if (this.finished) return;
          await this.onFrame(line);
        }
      })
      .catch((err) => this.fail(err))
      .finally(() => {
        if (!this.finished) this.socket.resume();
      });
  }

  private async onFrame(line: string): Promise<void> {
    if (!this.child) {
      if (this.started) return;
      this.started = true;
      const frame = await parseFirstFrame(line);
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
    if (this.socket.destroyed) {
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
