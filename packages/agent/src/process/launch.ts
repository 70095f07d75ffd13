import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ProcessConfig, StartRequest } from "@tether/protocol/process";
import type { UnixUser } from "../auth/users.js";
import type { AgentState } from "../state.js";
import type { Credentials } from "./credentials.js";

/** PATH for children when neither the agent's defaults nor the request set one. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const DEFAULT_PTY_SIZE = { cols: 80, rows: 24 };
const MAX_PTY_DIMENSION = 0xffff;

/** Everything needed to spawn one child, decided and validated before spawning. */
export interface LaunchSpec {
  /** What the client asked to run; List reports it back unchanged. */
  config: ProcessConfig;
  tag?: string;
  /** The program actually exec'd: the command itself, or tether-exec-as in front of it. */
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** Ids the spawner itself switches to (our addon, or libuv). */
  ids?: { uid: number; gid: number; groups: number[] };
  pty?: { cols: number; rows: number };
  /** False: the child's stdin is /dev/null. */
  stdin: boolean;
}

/**
 * Turns a StartRequest into a LaunchSpec: validates it, builds the environment (agent
 * defaults, then the user's identity, then the request's own envs) and the working
 * directory (request, else the agent default, else the user's home).
 */
export function planLaunch(
  req: Pick<StartRequest, "process" | "pty" | "tag" | "stdin">,
  user: UnixUser,
  state: AgentState,
  creds: Credentials,
): LaunchSpec {
  const config = req.process;
  if (!config?.cmd) throw new ConnectError("process.cmd is required", Code.InvalidArgument);
  rejectNul("process.cmd", config.cmd);
  for (const [i, arg] of config.args.entries()) rejectNul(`process.args[${i}]`, arg);
  for (const [key, value] of Object.entries(config.envs)) {
    if (!key || key.includes("="))
      throw new ConnectError(`invalid env var name ${JSON.stringify(key)}`, Code.InvalidArgument);
    rejectNul(`process.envs[${key}]`, key + value);
  }
  if (config.cwd) rejectNul("process.cwd", config.cwd);

  const env: Record<string, string> = {
    ...state.envVars,
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: user.shell,
  };
  if (!env.PATH && !config.envs.PATH) env.PATH = DEFAULT_PATH;
  Object.assign(env, config.envs);

  const cwd = path.resolve(user.home, config.cwd || state.defaultWorkdir || user.home);
  const spec: LaunchSpec = {
    config,
    tag: req.tag || undefined,
    file: config.cmd,
    args: config.args,
    env,
    cwd,
    stdin: req.stdin ?? true,
  };
  if (req.pty) spec.pty = ptySize(req.pty.size);
  if (creds.kind === "ids") spec.ids = { uid: creds.uid, gid: creds.gid, groups: creds.groups };
  if (creds.kind === "exec-as") {
    spec.file = creds.file;
    spec.args = [...creds.args, config.cmd, ...config.args];
  }
  return spec;
}

/** Validates and defaults a PTY size from the wire (0 means "use the default"). */
export function ptySize(size: { cols: number; rows: number } | undefined): { cols: number; rows: number } {
  const cols = size?.cols || DEFAULT_PTY_SIZE.cols;
  const rows = size?.rows || DEFAULT_PTY_SIZE.rows;
  if (cols > MAX_PTY_DIMENSION || rows > MAX_PTY_DIMENSION) {
    throw new ConnectError(`pty size ${cols}x${rows} is out of range`, Code.InvalidArgument);
  }
  return { cols, rows };
}

/**
 * Checks up front what a spawn would otherwise report badly: node-pty and tether-exec-as both
 * turn a missing cwd or program into output and exit code 1 or 127. Plain pipe children
 * skip this (libuv reports the errno) and use `explainSpawnFailure` instead.
 */
export async function checkLaunchable(spec: LaunchSpec): Promise<void> {
  await checkCwd(spec.cwd);
  if (!(await findExecutable(spec.config.cmd, spec.env.PATH ?? DEFAULT_PATH, spec.cwd))) {
    throw new ConnectError(`executable not found: ${spec.config.cmd}`, Code.NotFound);
  }
}

/** Turns the errno of a failed spawn into an error that says what was wrong. */
export async function explainSpawnFailure(spec: LaunchSpec, err: NodeJS.ErrnoException): Promise<ConnectError> {
  await checkCwd(spec.cwd);
  const what = [spec.config.cmd, ...spec.config.args].join(" ");
  switch (err.code) {
    case "ENOENT":
      return new ConnectError(`executable not found: ${spec.config.cmd} (running ${what})`, Code.NotFound);
    case "EACCES":
    case "EPERM":
      return new ConnectError(`permission denied executing ${spec.config.cmd}`, Code.PermissionDenied);
    case "ENOEXEC":
      return new ConnectError(`${spec.config.cmd} is not an executable format`, Code.InvalidArgument);
    case "EAGAIN":
    case "EMFILE":
    case "ENFILE":
    case "ENOMEM":
      return new ConnectError(`cannot start ${what}: ${err.message}`, Code.ResourceExhausted);
    default:
      return new ConnectError(`cannot start ${what}: ${err.message}`, Code.Internal);
  }
}

async function checkCwd(cwd: string): Promise<void> {
  const info = await stat(cwd).catch(() => undefined);
  if (!info) throw new ConnectError(`working directory ${cwd} does not exist`, Code.InvalidArgument);
  if (!info.isDirectory()) throw new ConnectError(`working directory ${cwd} is not a directory`, Code.InvalidArgument);
}

/** Resolves a command the way execvp does: a path as is, a bare name through PATH. */
async function findExecutable(cmd: string, searchPath: string, cwd: string): Promise<string | undefined> {
  const candidates = cmd.includes("/")
    ? [path.resolve(cwd, cmd)]
    : searchPath.split(":").map((dir) => path.resolve(cwd, dir || ".", cmd));
  for (const candidate of candidates) {
    const info = await stat(candidate).catch(() => undefined);
    if (!info?.isFile()) continue;
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return undefined;
}

function rejectNul(field: string, value: string): void {
  if (value.includes("\0")) throw new ConnectError(`${field} contains a NUL byte`, Code.InvalidArgument);
}
