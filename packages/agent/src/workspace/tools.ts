import { constants } from "node:os";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ProcessConfigSchema } from "@tether/protocol/process";
import type { UnixUser } from "../auth/users.js";
import { spawnChild } from "../process/child.js";
import type { Credentials } from "../process/credentials.js";
import { checkLaunchable, type LaunchSpec, planLaunch } from "../process/launch.js";
import type { AgentState } from "../state.js";
import { type InitLog, LineSplitter } from "./log.js";

/** What one run of a tool printed and how it ended. */
export interface ToolResult {
  exitCode: number;
  stdout: string;
  /** Every line it printed (stdout and stderr), for error messages. */
  lines: string[];
}

/** A tool the image lacks; the request needed it. */
export interface MissingTool {
  name: string;
  /** What it was needed for, e.g. "the GPG signing key". */
  purpose: string;
}

/**
 * Runs git and gpg as the request's user, the way the process services run commands:
 * the same environment (agent defaults, the user's identity), credentials and spawner.
 */
export class ToolRunner {
  constructor(
    private readonly user: UnixUser,
    private readonly state: AgentState,
    private readonly creds: Credentials,
    private readonly cwd: string,
    private readonly signal: AbortSignal,
  ) {}

  /** The tools among `wanted` that are not on the user's PATH. */
  async missing(wanted: MissingTool[]): Promise<MissingTool[]> {
    const out: MissingTool[] = [];
    for (const tool of wanted) {
      try {
        await checkLaunchable(this.spec([tool.name]));
      } catch (err) {
        if (err instanceof ConnectError && err.code === Code.NotFound && err.rawMessage.startsWith("executable")) {
          out.push(tool);
        } else {
          throw err;
        }
      }
    }
    return out;
  }

  /** The PATH tools are looked up in, for error messages. */
  get path(): string {
    return this.spec(["true"]).env.PATH ?? "";
  }

  /**
   * Runs argv; each output line goes to `log` unless `quiet` (stdout is kept either way).
   * Resolves with the exit code; a non-zero exit is the caller's to judge.
   */
  async run(argv: string[], log: InitLog | undefined, options: { quiet?: boolean } = {}): Promise<ToolResult> {
    if (this.signal.aborted) throw new ConnectError("init was cancelled", Code.Canceled);
    const spec = this.spec(argv);
    const lines: string[] = [];
    const stdout: Buffer[] = [];
    const onLine = (line: string) => {
      lines.push(line);
      if (!options.quiet) log?.line(line);
    };
    const out = new LineSplitter(onLine);
    const err = new LineSplitter(onLine);
    let finish: (code: number) => void = () => {};
    const ended = new Promise<number>((resolve) => {
      finish = resolve;
    });
    const child = await spawnChild(spec, {
      onOutput(kind, chunk) {
        if (kind === "stdout") {
          stdout.push(Buffer.from(chunk));
          out.push(chunk);
        } else {
          err.push(chunk);
        }
      },
      onEnd(status) {
        out.flush();
        err.flush();
        finish(status.exited ? status.exitCode : 128 + (status.signal ? constants.signals[status.signal] : 0));
      },
    });
    const kill = () => child.signal("SIGKILL");
    this.signal.addEventListener("abort", kill, { once: true });
    try {
      const exitCode = await ended;
      if (this.signal.aborted) throw new ConnectError("init was cancelled", Code.Canceled);
      return { exitCode, stdout: Buffer.concat(stdout).toString("utf8"), lines };
    } finally {
      this.signal.removeEventListener("abort", kill);
    }
  }

  private spec(argv: string[]): LaunchSpec {
    const [cmd, ...args] = argv;
    const spec = planLaunch(
      { process: create(ProcessConfigSchema, { cmd, args, cwd: this.cwd }), stdin: false },
      this.user,
      this.state,
      this.creds,
    );
    // Never wait for a password or a host-key answer nobody can give.
    spec.env.GIT_TERMINAL_PROMPT ??= "0";
    spec.env.GIT_SSH_COMMAND ??= "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new";
    return spec;
  }
}
