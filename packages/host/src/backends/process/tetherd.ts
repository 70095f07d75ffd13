import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { HOST_AGENT_DIR } from "@tether/bundle";
import { TETHERD_NODE_FLAGS } from "@tether/protocol/constants";

/** How a process backend starts the agent: this host's node running the repo's tetherd. */
export interface AgentProgram {
  node: string;
  /** Flags for node, before the script. */
  nodeFlags: readonly string[];
  tetherd: string;
}

/**
 * tetherd as `npm run build` bundled it for this Node (see @tether/bundle's writeHostAgent),
 * else the agent's compiled bin: found through the @tether/agent package from any cwd.
 */
export function agentProgram(): AgentProgram {
  const agentDir = path.resolve(path.dirname(fileURLToPath(import.meta.resolve("@tether/agent"))), "../..");
  const bundled = path.join(agentDir, HOST_AGENT_DIR, "tetherd.js");
  return {
    node: process.execPath,
    nodeFlags: TETHERD_NODE_FLAGS,
    tetherd: existsSync(bundled) ? bundled : path.join(agentDir, "bin", "tetherd.js"),
  };
}

/**
 * The supervisor script, compiled next to this file; found through the package, since this
 * module may run bundled into another file (the CLI's bundle).
 */
export function supervisorScript(): string {
  return fileURLToPath(new URL("./backends/process/supervisor.js", import.meta.resolve("@tether/host")));
}
