import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import os from "node:os";
import { waitForAgent } from "../../agent-health.js";
import {
  InvalidSandboxSpecError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxStartError,
} from "../../errors.js";
import { tetherHome } from "../../home.js";
import { isAlive, type ProcessIdentity, processIdentity } from "../../process-identity.js";
import { isValidSandboxId, newSandboxId } from "../../sandbox-dir.js";
import type {
  ListFilter,
  LogChunk,
  LogOptions,
  SandboxBackend,
  SandboxInfo,
  SandboxSpec,
  SandboxState,
  StopOptions,
} from "../backend.js";
import { lastLines } from "../docker/log-stream.js";
import { type ValidSpec, validateSpec } from "../spec.js";
import { readOutputLog } from "./output-log.js";
import { commandLine, descendants, signalEach } from "./process-tree.js";
import {
  BackendMetas,
  EXIT_FILE,
  type ExitRecord,
  LAUNCH_FILE,
  type LaunchPlan,
  META_FILE,
  OUTPUT_FILE,
  PAUSED_FILE,
  ProcessSandboxDir,
  type SandboxMeta,
  SUPERVISOR_FILE,
  type SupervisorRecord,
} from "./sandbox-files.js";
import { type AgentProgram, agentProgram, supervisorScript } from "./tetherd.js";

const DEFAULT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_TIMEOUT_S = 10;
const START_ERROR_LOG_LINES = 30;
/** The image a process sandbox reports: it runs on the host's own root filesystem. */
export const HOST_IMAGE = "host";

/**
 * Where `local` and `bwrap` differ, and nothing else: what they accept, how isolated
 * they are, and the command line that starts the agent.
 */
export interface LaunchStrategy {
  readonly kind: string;
  /** How isolated its sandboxes are, in a few words (for `ls` and `doctor`). */
  readonly isolation: string;
  /** Throws InvalidSandboxSpecError for what it cannot honour; `input` is the spec as given. */
  check(spec: ValidSpec, input: SandboxSpec): void;
  /** The agent's command line and environment for this sandbox. */
  plan(meta: SandboxMeta, dir: ProcessSandboxDir, program: AgentProgram, home: string): LaunchPlan;
}

export interface ProcessBackendOptions {
  /** TETHER_HOME; default `tetherHome()`. */
  home?: string;
  /** How the agent is started; default this node running @tether/agent's tetherd. */
  program?: AgentProgram;
}

/** Env names that must not reach a sandbox from the caller's environment. */
function callerOnly(name: string): boolean {
  return name.startsWith("TETHER_");
}

/**
 * The agent's environment: the caller's (minus TETHER_*), then the spec's. Names that
 * would configure the agent's own node (NODE_OPTIONS, LD_*, TETHER_*) are blanked and
 * handed on as TETHER_ENV_<NAME>, which tetherd --inherit-env gives back to its children.
 */
export function agentEnv(base: NodeJS.ProcessEnv, userEnv: Record<string, string>): Record<string, string> {
  const merged: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) {
    if (value !== undefined && !callerOnly(name)) merged[name] = value;
  }
  Object.assign(merged, userEnv);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(merged)) {
    if (name === "NODE_OPTIONS" || name.startsWith("LD_") || name.startsWith("TETHER_")) {
      out[`TETHER_ENV_${name}`] = value;
    } else {
      out[name] = value;
    }
  }
  return out;
}

/** tetherd's flags for a process sandbox: unix socket only, token from its hand-over file. */
export function agentFlags(meta: SandboxMeta, paths: { socket: string; tokenFile: string; workdir: string }): string[] {
  const flags = [
    "--no-tcp",
    "--socket",
    paths.socket,
    "--access-token-file",
    paths.tokenFile,
    "--inherit-env",
    "--workdir",
    paths.workdir,
  ];
  if (meta.user) flags.push("--user", meta.user);
  if (meta.command && meta.command.length > 0) flags.push("--", ...meta.command);
  return flags;
}

/** The exit code a stopped sandbox reports: the agent's, or 128 + signal. */
function exitCodeOf(exit: ExitRecord): number | undefined {
  if (exit.code !== null) return exit.code;
  const number = exit.signal ? os.constants.signals[exit.signal as NodeJS.Signals] : undefined;
  return number !== undefined ? 128 + number : undefined;
}

interface Status {
  meta: SandboxMeta;
  state: SandboxState;
  supervisor?: SupervisorRecord;
  exit?: ExitRecord;
}

/**
 * Sandboxes as a tetherd process under a detached supervisor (see supervisor.ts), one
 * host directory each: `local` runs it as a plain process, `bwrap` inside bubblewrap.
 * Like the Docker backend it is stateless: the directories and live processes are the truth.
 */
export class ProcessBackend implements SandboxBackend {
  readonly kind: string;
  readonly home: string;
  private readonly metas: BackendMetas<SandboxMeta>;
  private readonly program: AgentProgram;

  constructor(
    readonly strategy: LaunchStrategy,
    options: ProcessBackendOptions = {},
  ) {
    this.kind = strategy.kind;
    this.home = options.home ?? tetherHome();
    this.metas = new BackendMetas(this.home, this.kind);
    this.program = options.program ?? agentProgram();
  }

  /** How isolated this backend's sandboxes are, in a few words. */
  get isolation(): string {
    return this.strategy.isolation;
  }

  async create(input: SandboxSpec): Promise<SandboxInfo> {
    const spec = await validateSpec({ ...input, image: input.image || HOST_IMAGE });
    this.strategy.check(spec, input);
    const id = spec.id ?? newSandboxId();
    const name = spec.name ?? `tether-${id}`;
    if (await this.metas.byName(name)) throw new InvalidSandboxSpecError(`the name ${name} is taken`);
    const dir = new ProcessSandboxDir(this.home, id);
    try {
      await dir.create();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        throw new InvalidSandboxSpecError(`sandbox directory ${dir.path} already exists (id ${id} is taken)`);
      }
      throw err;
    }
    try {
      await mkdir(dir.workDir, { mode: 0o755 });
      const meta: SandboxMeta = {
        id,
        name,
        backend: this.kind,
        image: spec.image,
        labels: spec.labels,
        createdAt: Date.now(),
        env: spec.env,
        workdir: spec.workdir,
        user: spec.user,
        network: spec.network,
        mounts: spec.mounts,
        command: spec.runCommand ? spec.command : undefined,
      };
      await dir.writeJson(META_FILE, meta);
      await this.launch(dir, meta, spec.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
      return await this.inspect(id);
    } catch (err) {
      // Nothing is left behind: neither processes nor the host directory.
      await this.kill(dir);
      await dir.remove();
      throw err;
    }
  }

  async start(id: string): Promise<SandboxInfo> {
    const status = await this.require(id);
    if (status.state === "running") return this.inspect(status.meta.id);
    if (status.state === "paused") {
      await this.unpause(status.meta.id);
      return this.inspect(status.meta.id);
    }
    const dir = this.dir(status.meta.id);
    await dir.prepareRestart();
    await this.launch(dir, status.meta, DEFAULT_READY_TIMEOUT_MS);
    return this.inspect(status.meta.id);
  }

  async stop(id: string, options: StopOptions = {}): Promise<void> {
    const status = await this.require(id);
    if (!status.supervisor || (status.state !== "running" && status.state !== "paused")) return;
    const dir = this.dir(status.meta.id);
    const supervisor = status.supervisor;
    const tree = this.tree(supervisor);
    if (status.state === "paused") {
      signalEach(
        tree.map((p) => p.pid),
        "SIGCONT",
      );
      await dir.removeFile(PAUSED_FILE);
    }
    const timeoutMs = (options.timeoutSeconds ?? DEFAULT_STOP_TIMEOUT_S) * 1000;
    if (timeoutMs > 0) {
      // The agent passes SIGTERM on to its supervised command and exits; the supervisor follows.
      // The agent: node whose script (its first argument after node's flags) is tetherd.
      const agent = tree.find(
        (p) =>
          commandLine(p.pid)
            ?.slice(1)
            .find((a) => !a.startsWith("-")) === this.program.tetherd,
      );
      signalEach([agent?.pid ?? supervisor.pid], "SIGTERM");
      await waitUntil(() => !isAlive(supervisor) && !(supervisor.agent && isAlive(supervisor.agent)), timeoutMs);
    }
    await this.kill(dir, tree);
  }

  async pause(id: string): Promise<void> {
    const status = await this.require(id);
    if (status.state === "paused") return;
    if (status.state !== "running" || !status.supervisor) {
      throw new SandboxNotRunningError(status.meta.id, status.state);
    }
    await this.dir(status.meta.id).writeJson(PAUSED_FILE, { at: Date.now() });
    // Twice: a process forked while the first round went by is caught by the second.
    for (let round = 0; round < 2; round++) signalEach(descendants(status.supervisor.pid), "SIGSTOP");
  }

  async unpause(id: string): Promise<void> {
    const status = await this.require(id);
    if (status.state === "running") return;
    if (status.state !== "paused" || !status.supervisor) {
      throw new SandboxNotRunningError(status.meta.id, status.state);
    }
    signalEach(descendants(status.supervisor.pid), "SIGCONT");
    await this.dir(status.meta.id).removeFile(PAUSED_FILE);
  }

  async remove(id: string): Promise<void> {
    const status = await this.status(id);
    const sandboxId = status?.meta.id ?? id;
    if (!isValidSandboxId(sandboxId)) return;
    const dir = this.dir(sandboxId);
    // Another backend's sandbox is not ours to remove; a directory without sandbox.json is a half-made one of ours.
    const meta = await dir.readJson<SandboxMeta>(META_FILE);
    if (meta && meta.backend !== this.kind) return;
    await this.kill(dir);
    await dir.remove();
  }

  async *logs(id: string, options: LogOptions = {}): AsyncGenerator<LogChunk> {
    const status = await this.require(id);
    const dir = this.dir(status.meta.id);
    yield* readOutputLog(dir.file(OUTPUT_FILE), options, async () => {
      const now = await this.status(status.meta.id);
      return now?.state === "running" || now?.state === "paused" || now?.state === "creating";
    });
  }

  async inspect(id: string): Promise<SandboxInfo> {
    return this.describe(await this.require(id));
  }

  async list(filter: ListFilter = {}): Promise<SandboxInfo[]> {
    const out: SandboxInfo[] = [];
    for (const meta of await this.metas.all()) {
      const status = await this.statusOf(meta);
      const wanted = Object.entries(filter.labels ?? {});
      if (wanted.some(([k, v]) => status.meta.labels[k] !== v)) continue;
      out.push(await this.describe(status));
    }
    return out;
  }

  /** The work directory of a sandbox (its default working directory unless the spec named one). */
  workDir(id: string): string {
    return this.dir(id).workDir;
  }

  private dir(id: string): ProcessSandboxDir {
    return new ProcessSandboxDir(this.home, id);
  }

  /** Starts the supervisor (detached, outliving this process) and waits for the agent's health. */
  private async launch(dir: ProcessSandboxDir, meta: SandboxMeta, timeoutMs: number): Promise<void> {
    for (const name of [EXIT_FILE, SUPERVISOR_FILE, PAUSED_FILE]) await dir.removeFile(name);
    await dir.writeJson(LAUNCH_FILE, this.strategy.plan(meta, dir, this.program, this.home));
    const log = openSync(dir.file("supervisor.log"), "a", 0o600);
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(process.execPath, [supervisorScript(), dir.path], {
        detached: true,
        stdio: ["ignore", log, log],
        cwd: dir.path,
      });
    } finally {
      closeSync(log);
    }
    child.unref();
    const started = child.pid !== undefined ? processIdentity(child.pid) : undefined;
    const notReady = await waitForAgent(
      dir.agentSocketPath,
      async () => {
        const exited = await dir.readJson<ExitRecord>(EXIT_FILE);
        return { alive: !exited && started !== undefined && isAlive(started), detail: exited?.error };
      },
      timeoutMs,
    );
    // The socket the agent just bound is the one the host keeps (see adoptSocket).
    if (!notReady) return dir.adoptSocket();
    const exit = await dir.readJson<ExitRecord>(EXIT_FILE);
    const code = exit ? exitCodeOf(exit) : undefined;
    const reason =
      notReady.reason === "died"
        ? exit?.error
          ? `the agent could not be started: ${exit.error}`
          : `the agent exited (code ${code ?? "?"}) before it answered`
        : `its agent did not answer health within ${timeoutMs} ms`;
    const lines = await this.tailLines(dir);
    throw new SandboxStartError(meta.id, meta.image, reason, lines, code);
  }

  private async tailLines(dir: ProcessSandboxDir): Promise<string[]> {
    const chunks: LogChunk[] = [];
    for await (const chunk of readOutputLog(dir.file(OUTPUT_FILE), {}, async () => false)) chunks.push(chunk);
    return lastLines(chunks, START_ERROR_LOG_LINES);
  }

  /**
   * The supervisor's live descendants, and the agent's with the agent itself when it
   * outlived its supervisor, with identities so a reused pid is never signalled later.
   */
  private tree(supervisor: SupervisorRecord): ProcessIdentity[] {
    const pids = new Set<number>();
    if (isAlive(supervisor)) for (const pid of descendants(supervisor.pid)) pids.add(pid);
    if (supervisor.agent && isAlive(supervisor.agent)) {
      pids.add(supervisor.agent.pid);
      for (const pid of descendants(supervisor.agent.pid)) pids.add(pid);
    }
    return [...pids].map((pid) => processIdentity(pid)).filter((p): p is ProcessIdentity => p !== undefined);
  }

  /**
   * SIGKILL to the supervisor and everything under it (and `known`, processes seen under
   * it before: a local agent's children outlive it, reparented). Records the exit when the
   * supervisor could not.
   */
  private async kill(dir: ProcessSandboxDir, known: ProcessIdentity[] = []): Promise<void> {
    const supervisor = await dir.readJson<SupervisorRecord>(SUPERVISOR_FILE);
    const alive = supervisor !== undefined && isAlive(supervisor);
    const tree = [...known, ...(supervisor ? this.tree(supervisor) : [])];
    if (alive) signalEach([supervisor.pid], "SIGKILL");
    signalEach(
      tree.filter((p) => isAlive(p)).map((p) => p.pid),
      "SIGKILL",
    );
    for (const p of tree) signalEach([p.pid], "SIGCONT");
    if (supervisor) await waitUntil(() => !isAlive(supervisor), 5_000);
    if (alive && !(await dir.has(EXIT_FILE))) {
      // Best effort: on a full disk the processes must still end, and the directory go.
      await dir
        .writeJson(EXIT_FILE, { code: null, signal: "SIGKILL", at: Date.now() } satisfies ExitRecord)
        .catch(() => {});
    }
    await dir.removeFile(PAUSED_FILE);
  }

  /** The sandbox's state from its files and live processes; undefined when it is not one of ours. */
  private async status(idOrName: string): Promise<Status | undefined> {
    const meta = await this.metas.byIdOrName(idOrName);
    return meta && this.statusOf(meta);
  }

  private async statusOf(meta: SandboxMeta): Promise<Status> {
    const dir = this.dir(meta.id);
    const supervisor = await dir.readJson<SupervisorRecord>(SUPERVISOR_FILE);
    // An agent whose supervisor died (killed; before supervisors survived a full disk, ENOSPC)
    // still runs the sandbox: it is up, and what stop and remove must end.
    if (supervisor && (isAlive(supervisor) || (supervisor.agent && isAlive(supervisor.agent)))) {
      return { meta, supervisor, state: (await dir.has(PAUSED_FILE)) ? "paused" : "running" };
    }
    const exit = await dir.readJson<ExitRecord>(EXIT_FILE);
    if (exit) return { meta, supervisor, exit, state: exit.error ? "error" : "stopped" };
    // A supervisor that died without a word (kill -9, a reboot): stopped. None yet: still being made.
    return { meta, supervisor, state: supervisor ? "stopped" : "creating" };
  }

  private async require(id: string): Promise<Status> {
    const status = await this.status(id);
    if (!status) throw new SandboxNotFoundError(id);
    return status;
  }

  private async describe(status: Status): Promise<SandboxInfo> {
    const dir = this.dir(status.meta.id);
    const info: SandboxInfo = {
      id: status.meta.id,
      name: status.meta.name,
      backend: this.kind,
      image: status.meta.image,
      state: status.state,
      labels: status.meta.labels,
      createdAt: new Date(status.meta.createdAt),
      backendId:
        status.supervisor && (status.state === "running" || status.state === "paused")
          ? `pid ${status.supervisor.pid}`
          : "",
    };
    const accessToken = await dir.readToken();
    if (accessToken) info.endpoint = { socket: dir.socketPath, accessToken };
    if (status.exit && (status.state === "stopped" || status.state === "error"))
      info.exitCode = exitCodeOf(status.exit);
    return info;
  }
}

/** Polls `done` every 20 ms until it holds or `timeoutMs` passes. */
async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
