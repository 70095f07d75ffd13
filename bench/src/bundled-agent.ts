import path from "node:path";
import { type AgentProcess, spawnAgentProcess } from "@tether/agent";
import { DockerBackend } from "@tether/host";
import { Agent } from "@tether/sdk";

/**
 * What ships in sandboxes: the bundle's tetherd on the bundle's own Node, with the bundle's
 * flags, started on this host through the bundle's loader as a container starts it (its
 * paths under the mount point mapped to the bundle's directory here).
 */
export async function spawnBundledAgent(argv: string[]): Promise<AgentProcess> {
  const bundle = await new DockerBackend().bundle();
  const tetherd = bundle.command.map((arg) =>
    arg.startsWith(`${bundle.mountPoint}/`) ? path.join(bundle.dir, arg.slice(bundle.mountPoint.length)) : arg,
  );
  return spawnAgentProcess(argv, { tetherd });
}

/** The bundle's tetherd on a unix socket in `dir`, with a client; `stop` ends both. */
export async function startBundledAgent(
  dir: string,
  name: string,
): Promise<{ agent: AgentProcess; client: Agent; stop(): Promise<void> }> {
  const socket = path.join(dir, `${name}.sock`);
  const agent = await spawnBundledAgent(["--no-tcp", "--socket", socket, "--log-level", "info"]);
  const client = new Agent({ socket });
  const stop = async () => {
    client.close();
    await agent.stop();
  };
  try {
    await client.health();
  } catch (err) {
    await stop();
    throw err;
  }
  return { agent, client, stop };
}
