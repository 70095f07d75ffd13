import { randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, readlink, rm, symlink, unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/** Suffix of the temp files uploads stream into; watchers ignore such names. */
export const UPLOAD_TEMP_SUFFIX = ".tether-upload";

/** True for the name of an upload's temp file (`.<name>.<random>.tether-upload`). */
export function isUploadTempName(name: string): boolean {
  return name.startsWith(".") && name.endsWith(UPLOAD_TEMP_SUFFIX);
}

/** A marker's name: the pid of the agent that made it, then a random part. */
const MARKER = /^(\d+)-[0-9a-f]+$/;

/**
 * The uploads in progress, one symlink per temp file (named `<pid>-<random>`, pointing to
 * it), in a directory private to the agent's user. An upload's temp file lives beside its
 * target anywhere on disk; an agent killed mid-upload (kill -9, OOM) would leave it there
 * for good, listed by ListDir. At start, `sweep` removes the temp files whose agent is gone.
 */
export class UploadJournal {
  private usable: Promise<boolean> | undefined;
  /** Markers this agent made, so its sweep never takes an upload of its own. */
  private readonly own = new Set<string>();

  constructor(readonly dir: string) {}

  /** Records `temp` before it is written; the marker's name, or undefined where no journal can be kept. */
  async add(temp: string): Promise<string | undefined> {
    if (!(await this.ready())) return undefined;
    const name = `${process.pid}-${randomBytes(8).toString("hex")}`;
    this.own.add(name);
    try {
      await symlink(temp, path.join(this.dir, name));
      return name;
    } catch {
      this.own.delete(name);
      return undefined;
    }
  }

  /** Forgets a temp file that was renamed into place or removed. */
  async remove(name: string | undefined): Promise<void> {
    if (name === undefined) return;
    await unlink(path.join(this.dir, name)).catch(() => {});
    this.own.delete(name);
  }

  /**
   * Removes the temp files of agents that are gone (another pid no longer running, or this
   * pid in an earlier life: a restarted container's agent is pid 1 again) and their markers.
   * Only a path named like a temp file is ever removed. Returns the paths removed.
   */
  async sweep(): Promise<string[]> {
    if (!(await this.ready())) return [];
    const removed: string[] = [];
    for (const name of await readdir(this.dir)) {
      const pid = Number(MARKER.exec(name)?.[1] ?? Number.NaN);
      if (Number.isNaN(pid) || this.own.has(name) || (pid !== process.pid && isRunning(pid))) continue;
      const marker = path.join(this.dir, name);
      const temp = await readlink(marker).catch(() => undefined);
      if (temp !== undefined && path.isAbsolute(temp) && isUploadTempName(path.basename(temp))) {
        const existed = await lstat(temp).then(
          () => true,
          () => false,
        );
        await rm(temp, { force: true });
        if (existed) removed.push(temp);
      }
      await unlink(marker).catch(() => {});
    }
    return removed;
  }

  /**
   * Makes the directory (0700) once. Anyone may create names in the temp directory first:
   * one that is not a directory of our own that only we can write is not used.
   */
  private ready(): Promise<boolean> {
    this.usable ??= (async () => {
      await mkdir(this.dir, { mode: 0o700 }).catch(() => {});
      const st = await lstat(this.dir).catch(() => undefined);
      return st?.isDirectory() === true && st.uid === process.getuid?.() && (st.mode & 0o077) === 0;
    })();
    return this.usable;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The agent's journal, in the temp directory (per user: agents of several users may share a host). */
export const uploadJournal = new UploadJournal(path.join(os.tmpdir(), `tetherd-uploads-${process.getuid?.() ?? 0}`));
