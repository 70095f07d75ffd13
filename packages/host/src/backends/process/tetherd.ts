import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { TETHERD_BIN } from "@tether/agent/paths";
import { HOST_TETHERD } from "@tether/bundle";
import { hostTetherdNodeFlags } from "@tether/protocol/constants";

/** How a process backend starts the agent: this host's node running the repo's tetherd. */
export interface AgentProgram {
  node: string;
  /** Flags for node, before the script. */
  nodeFlags: readonly string[];
  tetherd: string;
}

/** tetherd as `npm run build` bundled it for this Node (see @tether/bundle's writeHostAgent), else the agent's compiled bin. */
export function agentProgram(): AgentProgram {
  return {
    node: process.execPath,
    nodeFlags: hostTetherdNodeFlags(),
    tetherd: existsSync(HOST_TETHERD) ? HOST_TETHERD : TETHERD_BIN,
  };
}

/**
 * The supervisor script, compiled next to this file; found through the package, since this
 * module may run bundled into another file (the CLI's bundle).
 */
export function supervisorScript(): string {
  return fileURLToPath(new URL("./backends/process/supervisor.js", import.meta.resolve("@tether/host")));
}
