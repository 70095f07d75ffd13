import { Agent } from "@tether/sdk";
import type { Command } from "commander";
import { connectSandbox } from "./sandboxes.js";

/** The flags that name an agent directly instead of by sandbox id. */
export interface TargetFlags {
  agent?: string;
  socket?: string;
  token?: string;
}

/** Adds --agent, --socket and --token to a command that otherwise takes a sandbox id. */
export function withTargetOptions(command: Command): Command {
  return command
    .option("--agent <url>", "the agent's URL, e.g. http://127.0.0.1:49983 (instead of ID)")
    .option("--socket <path>", "the agent's unix socket (instead of ID)")
    .option("--token <token>", "the agent's access token (env TETHER_ACCESS_TOKEN), with --agent/--socket");
}

/** Whether the command names its agent with --agent or --socket (so it takes no id). */
export function isDirect(command: Command): boolean {
  const flags = command.opts<TargetFlags>();
  return flags.agent !== undefined || flags.socket !== undefined;
}

/**
 * A client for the sandbox `id`, or for the agent given by --agent/--socket; a usage
 * error (through commander) when both or neither are given.
 */
export async function connectTarget(command: Command, id: string | undefined): Promise<Agent> {
  const flags = command.opts<TargetFlags>();
  if (flags.agent !== undefined && flags.socket !== undefined) {
    command.error("error: give one of --agent URL or --socket PATH, not both");
  }
  if (isDirect(command)) {
    if (id !== undefined) command.error("error: give a sandbox id or --agent/--socket, not both");
    const accessToken = flags.token ?? process.env.TETHER_ACCESS_TOKEN;
    const target = flags.agent !== undefined ? { url: flags.agent } : { socket: flags.socket as string };
    const agent = new Agent({ ...target, accessToken });
    try {
      await agent.health();
    } catch (err) {
      agent.close();
      throw err;
    }
    return agent;
  }
  if (id === undefined) command.error("error: give a sandbox id, or --agent URL or --socket PATH");
  if (flags.token !== undefined) command.error("error: --token goes with --agent or --socket, not a sandbox id");
  return connectSandbox(id as string);
}
