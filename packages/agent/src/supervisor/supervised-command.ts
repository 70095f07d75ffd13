import { type ChildProcess, spawn } from "node:child_process";
import type { Logger } from "../logger.js";
import { type ExitStatus, exitStatus } from "../process/exit-status.js";

/** What to run as the sandbox's main command, decided by `planSupervisedCommand`. */
export interface SupervisedSpec {
  /** The program exec'd (the command itself, or setpriv in front of it). */
  file: string;
  args: string[];
  /** The argv as asked for, for logs. */
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  ids?: { uid: number; gid: number };
}

/**
 * The sandbox's own command (an image's entrypoint + cmd), run beside the agent. Its
 * stdout and stderr are the agent's own (so `docker logs` shows them), its exit is
 * logged, and the agent stays up after it ends: a sandbox whose command is a bare shell
 * exits at once but is still a sandbox.
 */
export class SupervisedCommand {
  /** Resolves once the command has ended (or could not start). Never rejects. */
  readonly exited: Promise<ExitStatus>;
  private readonly proc: ChildProcess;
  private status: ExitStatus | undefined;

  private constructor(
    spec: SupervisedSpec,
    private readonly log: Logger,
  ) {
    this.proc = spawn(spec.file, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      // Its own session and process group, so a stop reaches everything it started.
      detached: true,
      stdio: ["ignore", "inherit", "inherit"],
      uid: spec.ids?.uid,
      gid: spec.ids?.gid,
    });
    this.exited = new Promise((resolve) => {
      this.proc.once("error", (err: NodeJS.ErrnoException) => {
        // A failed spawn emits no exit; 127 is what a shell reports for a missing command.
        this.status ??= { exitCode: err.code === "ENOENT" ? 127 : 126, exited: true, status: err.message };
        log.error({ argv: spec.argv, err: err.message }, "supervised command could not start");
        resolve(this.status);
      });
      this.proc.once("exit", (code, signal) => {
        this.status = exitStatus(code, signal);
        log.info(
          { argv: spec.argv, childPid: this.proc.pid, exitCode: this.status.exitCode, status: this.status.status },
          "supervised command exited",
        );
        resolve(this.status);
      });
    });
    if (this.proc.pid !== undefined)
      log.info({ argv: spec.argv, childPid: this.proc.pid }, "supervised command started");
  }

  /** Starts the command; failures to start are logged and reported through `exited`. */
  static start(spec: SupervisedSpec, log: Logger): SupervisedCommand {
    return new SupervisedCommand(spec, log);
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /**
   * SIGTERM to the command's process group, up to `timeoutMs` for it to end, then
   * SIGKILL. Resolves with how it ended.
   */
  async stop(timeoutMs: number): Promise<ExitStatus> {
    if (this.status) return this.status;
    this.signalGroup("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const first = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (first !== "timeout") return first;
    this.log.warn({ childPid: this.proc.pid, timeoutMs }, "supervised command ignored SIGTERM; killing it");
    this.signalGroup("SIGKILL");
    return this.exited;
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.proc.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone (or the leader left it): signal the leader alone, if still ours.
      if (!this.status) this.proc.kill(signal);
    }
  }
}
