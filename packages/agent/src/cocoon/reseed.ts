import { randomBytes } from "node:crypto";
import { open, rename, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { FrameError, MAX_RESEED_BYTES } from "./frames.js";

/** Where a reseed writes; tests point these into a scratch root. */
export interface ReseedPaths {
  /** Written to mix bytes into the kernel's pool. */
  urandom: string;
  /** Saved seeds a cloned VM must not reuse (systemd's and Debian's urandom script's). */
  seedFiles: string[];
  machineId: string;
}

export const DEFAULT_RESEED_PATHS: ReseedPaths = {
  urandom: "/dev/urandom",
  seedFiles: ["/var/lib/systemd/random-seed", "/var/lib/urandom/random-seed"],
  machineId: "/etc/machine-id",
};

/**
 * After a VM is cloned from a snapshot every clone shares the same pool and seeds. Writing
 * the host's bytes to /dev/urandom mixes them into the pool without crediting entropy:
 * crediting needs the RNDADDENTROPY ioctl, which Node cannot call, and the mixing is what
 * makes clones diverge. The saved seed is removed so the next boot cannot replay it, and
 * a fresh machine-id is written atomically (temp file + rename) when asked.
 */
export async function reseed(data: Buffer, regenMachineId: boolean, paths: ReseedPaths): Promise<void> {
  if (data.length === 0) throw new FrameError("reseed data is empty");
  if (data.length > MAX_RESEED_BYTES) {
    throw new FrameError(`reseed data is ${data.length} bytes; at most ${MAX_RESEED_BYTES} are accepted`);
  }
  const pool = await open(paths.urandom, "w");
  try {
    await pool.write(data);
  } finally {
    await pool.close();
  }
  for (const seed of paths.seedFiles) {
    await unlink(seed).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
  if (regenMachineId) {
    const temp = path.join(path.dirname(paths.machineId), `.machine-id.${process.pid}.tmp`);
    await writeFile(temp, `${randomBytes(16).toString("hex")}\n`, { mode: 0o444 });
    await rename(temp, paths.machineId);
  }
}
