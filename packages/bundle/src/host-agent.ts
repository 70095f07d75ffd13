import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { agentPackage, bundleAgentScript } from "./agent-script.js";

/** Where in @tether/agent `writeHostAgent` puts its files; the host's process backends look there. */
export const HOST_AGENT_DIR = path.join("dist", "host-tetherd");

/**
 * Writes tetherd bundled for the host's own Node into @tether/agent's `dist/host-tetherd`:
 * the agent's ES modules as a sandbox's bundle has them, without the pinned runtime, for the
 * local and bwrap backends. A few files instead of about 600: an agent on Node 20 listens in
 * about 105 ms instead of 220. `npm run build` runs it (scripts/host-agent.mjs). Returns the
 * loader's path.
 */
export async function writeHostAgent(): Promise<string> {
  const { dir: agentDir } = agentPackage();
  const dir = path.join(agentDir, HOST_AGENT_DIR);
  // The oldest Node the host supports, not the sandbox runtime's.
  const { files } = await bundleAgentScript(agentDir, "node20");
  const staging = `${dir}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  for (const file of files) {
    const target = path.join(staging, file.path);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, file.data);
  }
  await rm(dir, { recursive: true, force: true });
  await rename(staging, dir);
  return path.join(dir, "tetherd.js");
}
