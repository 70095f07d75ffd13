import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { InvalidSandboxSpecError } from "../../errors.js";
import { AGENT_SOCKET_NAME, SANDBOX_RUN_DIR, TOKEN_HANDOVER_NAME } from "../../sandbox-dir.js";
import { unsupported } from "../local/local-backend.js";
import {
  agentEnv,
  agentFlags,
  type LaunchStrategy,
  ProcessBackend,
  type ProcessBackendOptions,
} from "../process/process-backend.js";

/** The bubblewrap binary: $TETHER_BWRAP when set, else `bwrap` on PATH; undefined when there is none. */
export function findBwrap(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates =
    env.TETHER_BWRAP !== undefined
      ? [env.TETHER_BWRAP]
      : (env.PATH ?? "/usr/bin:/bin").split(":").map((dir) => path.join(dir || ".", "bwrap"));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The namespace flags every bwrap sandbox gets (and the probe tries). */
const NAMESPACES = ["--unshare-pid", "--unshare-ipc", "--unshare-uts"];
/** Host directories replaced by empty ones inside the sandbox (besides TETHER_HOME). */
const MASKED = ["/tmp", "/run"];

/** Whether bubblewrap can make a sandbox here: the binary runs and a probe sandbox exits 0. */
export async function probeBwrap(binary = findBwrap()): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (!binary) return { ok: false, reason: "no bwrap binary on PATH (Debian/Ubuntu: apt-get install bubblewrap)" };
  const args = [
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    ...NAMESPACES,
    "--unshare-net",
    "--cap-drop",
    "ALL",
    "--new-session",
    "--",
    "true",
  ];
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (t: string) => {
      stderr += t;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, reason: `${binary} cannot be run: ${err.message}` });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ ok: true });
      else {
        const why = stderr.trim() || (signal ? `killed by ${signal}` : `exit code ${code}`);
        resolve({ ok: false, reason: `a probe sandbox failed (${binary}): ${why}` });
      }
    });
  });
}

/** `--ro-bind`s that bring back what the agent needs from under a masked directory (e.g. a checkout in /tmp). */
function unmask(needed: readonly string[], masked: readonly string[]): string[] {
  const binds = new Set<string>();
  for (const p of needed) {
    for (const m of masked) {
      const rel = path.relative(m, p);
      if (rel && !rel.startsWith("..") && !path.isAbsolute(rel)) binds.add(path.join(m, rel.split(path.sep)[0]));
    }
  }
  return [...binds].flatMap((b) => ["--ro-bind", b, b]);
}

/**
 * `bwrap`: the agent inside bubblewrap. The host's root read-only, a private /tmp, /run,
 * /proc and /dev, TETHER_HOME hidden, the work directory writable, its own pid, ipc and
 * uts namespaces, no network (unless `network: "bridge"`, which here means the host's),
 * no capabilities. No --die-with-parent: the sandbox belongs to its supervisor, which
 * outlives the `tether` call that made it.
 */
export function bwrapStrategy(binary: string): LaunchStrategy {
  return {
    kind: "bwrap",
    isolation: "namespaces (bubblewrap)",
    check(spec, input) {
      const fields = unsupported(spec, input, ["cpus", "memory", "pidsLimit", "runtime", "user"]);
      if (fields.length > 0) {
        throw new InvalidSandboxSpecError(
          `backend bwrap cannot honour ${fields.join(", ")}: it has no cgroups and runs as the calling user without capabilities (use --backend docker)`,
        );
      }
    },
    plan(meta, dir, program, home) {
      const workdir = meta.workdir ?? dir.workDir;
      const mounts = meta.mounts.flatMap((m) => [m.readOnly ? "--ro-bind" : "--bind", m.source, m.target]);
      const hostname = /^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$/.test(meta.name) ? meta.name : `tether-${meta.id}`;
      const env = agentEnv(process.env, meta.env);
      // The caller's HOME and TMPDIR are read-only or hidden in here.
      if (meta.env.HOME === undefined) env.HOME = dir.workDir;
      if (meta.env.TMPDIR === undefined) delete env.TMPDIR;
      return {
        argv: [
          binary,
          "--ro-bind",
          "/",
          "/",
          "--dev",
          "/dev",
          "--proc",
          "/proc",
          ...MASKED.flatMap((m) => ["--tmpfs", m]),
          ...unmask([program.node, program.tetherd], MASKED),
          // Other sandboxes' tokens and the registry live here.
          "--tmpfs",
          home,
          "--bind",
          dir.workDir,
          dir.workDir,
          "--bind",
          dir.runDir,
          SANDBOX_RUN_DIR,
          ...mounts,
          ...NAMESPACES,
          "--hostname",
          hostname,
          ...(meta.network === "none" ? ["--unshare-net"] : []),
          "--cap-drop",
          "ALL",
          "--new-session",
          "--chdir",
          workdir,
          "--",
          program.node,
          ...program.nodeFlags,
          program.tetherd,
          ...agentFlags(meta, {
            socket: `${SANDBOX_RUN_DIR}/${AGENT_SOCKET_NAME}`,
            tokenFile: `${SANDBOX_RUN_DIR}/${TOKEN_HANDOVER_NAME}`,
            workdir,
          }),
        ],
        env,
        cwd: dir.workDir,
      };
    },
  };
}

export interface BwrapBackendOptions extends ProcessBackendOptions {
  /** The bubblewrap binary; default `findBwrap()`. */
  binary?: string;
}

/** Sandboxes in bubblewrap namespaces; see `bwrapStrategy`. */
export class BwrapBackend extends ProcessBackend {
  constructor(options: BwrapBackendOptions = {}) {
    super(bwrapStrategy(options.binary ?? findBwrap() ?? "bwrap"), options);
  }
}
