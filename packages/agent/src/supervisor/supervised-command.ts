import type { Logger } from "../logger.js";
import { signalGroup } from "../process/child.js";
import { type ExitStatus, exitStatus } from "../process/exit-status.js";
import { type StartedProcess, spawnWithOwnOutput } from "../process/spawner.js";

/** What to run as the sandbox's main command, decided by `planSupervisedCommand`. */
export interface SupervisedSpec {
  /** The program exec'd (the command itself, or tether-exec-as in front of it). */
  file: string;
  args: string[];
  /** The argv as asked for, for logs. */
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  ids?: { uid: number; gid: number; groups: number[] };
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
  private status: ExitStatus | undefined;

  private constructor(
    private readonly child: StartedProcess | undefined,
    private readonly log: Logger,
    exited: Promise<ExitStatus>,
  ) {
    this.exited = exited.then((status) => {
      this.status = status;
      return status;
    });
  }

  /**
   * Starts the command, in its own session and process group (so a stop reaches everything
   * it started), with the agent's stdout and stderr; failures to start are logged and
   * reported through `exited`.
   */
  static async start(spec: SupervisedSpec, log: Logger): Promise<SupervisedCommand> {
    let child: StartedProcess;
    try {
      child = await spawnWithOwnOutput(spec);
    } catch (err) {
      const { code, message } = err as NodeJS.ErrnoException;
      log.error({ argv: spec.argv, err: message }, "supervised command could not start");
      // 127 is what a shell reports for a missing command.
      const status = { exitCode: code === "ENOENT" ? 127 : 126, exited: true, status: message };
      return new SupervisedCommand(undefined, log, Promise.resolve(status));
    }
    log.info({ argv: spec.argv, childPid: child.pid }, "supervised command started");
    const exited = new Promise<ExitStatus>((resolve) => {
      child.onExit((code, signal) => {
        const status = exitStatus(code, signal);
        log.info(
          { argv: spec.argv, childPid: child.pid, exitCode: status.exitCode, status: status.status },
          "supervised command exited",
        );
        resolve(status);
      });
    });
    return new SupervisedCommand(child, log, exited);
  }

  get pid(): number | undefined {
    return this.child?.pid;
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
    this.log.warn({ childPid: this.pid, timeoutMs }, "supervised command ignored SIGTERM; killing it");
    this.signalGroup("SIGKILL");
    return this.exited;
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid === undefined) return;
    try {
      // The leader alone too while unreaped (it may have left its group): before we see its exit.
      signalGroup(pid, signal, !this.status);
    } catch {
      // Not ours to signal: a stop still waits for the exit, then reports it.
    }
  }
}
