import path from "node:path";
import { InvalidSandboxSpecError } from "../../errors.js";
import { TOKEN_HANDOVER_NAME } from "../../sandbox-dir.js";
import type { SandboxSpec } from "../backend.js";
import {
  agentEnv,
  agentFlags,
  type LaunchStrategy,
  ProcessBackend,
  type ProcessBackendOptions,
} from "../process/process-backend.js";
import type { ValidSpec } from "../spec.js";

/** Names of spec fields a backend cannot honour, for one error that lists them all. */
export function unsupported(spec: ValidSpec, input: SandboxSpec, fields: readonly (keyof SandboxSpec)[]): string[] {
  return fields.filter((f) => {
    const value = input[f];
    if (value === undefined) return false;
    if (f === "mounts") return spec.mounts.length > 0;
    if (f === "readOnlyRootfs") return value === true;
    return true;
  });
}

/**
 * `local`: the agent runs as a plain process of this user in the sandbox's work
 * directory. No isolation at all: the command sees this machine, its files, network
 * and processes. It needs nothing but node, so it is the last fallback.
 */
export const localStrategy: LaunchStrategy = {
  kind: "local",
  isolation: "none",
  check(spec, input) {
    const fields = unsupported(spec, input, ["cpus", "memory", "pidsLimit", "runtime", "readOnlyRootfs", "mounts"]);
    if (input.network === "none") fields.push("network");
    if (fields.length > 0) {
      throw new InvalidSandboxSpecError(
        `backend local cannot honour ${fields.join(", ")}: it runs the agent as a plain process with no isolation (use --backend bwrap or docker)`,
      );
    }
  },
  plan(meta, dir, program) {
    const workdir = meta.workdir ?? dir.workDir;
    return {
      argv: [
        program.node,
        ...program.nodeFlags,
        program.tetherd,
        ...agentFlags(meta, {
          socket: dir.agentSocketPath,
          tokenFile: path.join(dir.runDir, TOKEN_HANDOVER_NAME),
          workdir,
        }),
      ],
      env: agentEnv(process.env, meta.env),
      cwd: dir.workDir,
    };
  },
};

/** Sandboxes as plain local processes (no isolation); see `localStrategy`. */
export class LocalBackend extends ProcessBackend {
  constructor(options: ProcessBackendOptions = {}) {
    super(localStrategy, options);
  }
}
