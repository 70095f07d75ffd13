import path from "node:path";
import { fileURLToPath } from "node:url";

/** How a process backend starts the agent: this host's node running the repo's tetherd. */
export interface AgentProgram {
  node: string;
  tetherd: string;
}

/** tetherd's bin, found through the @tether/agent package so it works from any cwd. */
export function agentProgram(): AgentProgram {
  const entry = fileURLToPath(import.meta.resolve("@tether/agent"));
  return { node: process.execPath, tetherd: path.resolve(path.dirname(entry), "../../bin/tetherd.js") };
}

/**
 * The supervisor script, compiled next to this file; found through the package, since this
 * module may run bundled into another file (the CLI's bundle).
 */
export function supervisorScript(): string {
  return fileURLToPath(new URL("./backends/process/supervisor.js", import.meta.resolve("@tether/host")));
}
