import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { agentPackage, bundleAgentScript } from "./agent-script.js";

/**
 * Where `writeHostAgent` puts its files: this package's own `dist/host-tetherd`. The native
 * addons the agent imports resolve from here as from the agent: npm installs them in the
 * node_modules the two packages share.
 */
const HOST_AGENT_DIR = fileURLToPath(new URL("../host-tetherd", import.meta.url));

/** The loader of tetherd bundled for the host's Node, once `npm run build` has written it; the host's process backends run it. */
export const HOST_TETHERD = path.join(HOST_AGENT_DIR, "tetherd.js");

/**
 * Writes tetherd bundled for the host's own Node into this package's `dist/host-tetherd`:
 * the agent's ES modules as a sandbox's bundle has them, without the pinned runtime, for the
 * local and bwrap backends. A few files instead of about 600: an agent on Node 20 listens in
 * about 105 ms instead of 220. `npm run build` runs it (scripts/host-agent.mjs). Returns the
 * loader's path.
 */
export async function writeHostAgent(): Promise<string> {
  const { dir: agentDir } = agentPackage();
  const dir = HOST_AGENT_DIR;
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
  return HOST_TETHERD;
}
