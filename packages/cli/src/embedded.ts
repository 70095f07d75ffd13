import { constants } from "node:fs";
import { access, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { makeHome, Sandboxes, tetherHome } from "@tether/host";

/** A Sandboxes facade for `tether run` without an image, and what to clean up after. */
export interface EmbeddedSandboxes {
  sandboxes: Sandboxes;
  dispose(): Promise<void>;
}

/**
 * The facade the embedded default runs on. It needs no registry and no daemon: the
 * registry is used when it can be opened (so the run is recorded, and a crash is
 * cleaned up later), and when TETHER_HOME cannot be written at all the sandbox lives in
 * a scratch home under TMPDIR, removed afterwards.
 */
export async function embeddedSandboxes(): Promise<EmbeddedSandboxes> {
  const home = tetherHome();
  if (await homeIsWritable(home)) {
    const sandboxes = new Sandboxes({ home, registryOptional: true });
    return { sandboxes, dispose: async () => sandboxes.close() };
  }
  const scratch = await mkdtemp(path.join(os.tmpdir(), "tether-run-"));
  const sandboxes = new Sandboxes({ home: scratch, registry: false });
  return {
    sandboxes,
    dispose: async () => {
      sandboxes.close();
      await rm(scratch, { recursive: true, force: true });
    },
  };
}

/** Whether the tether home exists (made 0700 if not) and this user may write it. */
export async function homeIsWritable(home: string): Promise<boolean> {
  try {
    makeHome(home);
    await access(home, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
