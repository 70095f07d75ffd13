import { randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { constants } from "node:fs";
import { chmod, copyFile, type FileHandle, link, lstat, open, realpath, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { TransferUnavailableError } from "@tether/sdk";
import { TetherHostError } from "../errors.js";

/** A staged file the sandbox side left in a shape the host refuses to read (a link, a device, another filesystem). */
export class TransferRefusedError extends TetherHostError {}

/** Opening a staged file: never through a link, never blocking on a FIFO, never taking a terminal. */
const OPEN_STAGED = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * The host's side of a directory it shares with a sandbox (the docker backend's run/,
 * mounted at /run/tether), for copies that skip the agent's HTTP stream: bytes move by
 * copy_file_range on each side. The sandbox is untrusted and can write into the
 * directory at any time, so only names we made are touched, staged files are opened
 * with O_NOFOLLOW and checked (regular file, this directory's device, the size the
 * agent reported) and copied from that descriptor, never by name, and never renamed or
 * linked out (the sandbox could still hold them open). Files going in are staged in
 * `importDir` when there is one: the sandbox sees it read-only, so a hard link to the
 * source (no copy at all) is safe there, where it would not be in `dir`.
 */
export class SharedTransferDir {
  constructor(
    /** The directory on the host (the sandbox may write in it). */
    readonly dir: string,
    /** A directory the sandbox sees read-only, for files going in. */
    readonly importDir?: string,
  ) {}

  /** A fresh staged-file name (the agent accepts only this shape). */
  newName(): string {
    return `tether-xfer-${randomBytes(16).toString("hex")}`;
  }

  /**
   * Copies the local file `source` into the directory as `name` (created exclusively,
   * so nothing planted under that name is followed). Returns the staged size.
   * TransferUnavailableError when the directory cannot take it.
   */
  async stage(source: string, name: string): Promise<number> {
    const input = await open(source, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const info = await input.stat();
      if (!info.isFile()) throw new TetherHostError(`${source} is not a regular file`);
      const dir = this.importDir ?? this.dir;
      await this.checkDir(dir);
      const staged = path.join(dir, name);
      if (this.importDir && (await linkSame(source, info, staged))) return info.size;
      try {
        // Nothing after this touches the staged name but the agent and `remove`: in `dir`
        // the sandbox may have swapped it for a link already.
        await copyFile(descriptorPath(input), staged, constants.COPYFILE_EXCL);
      } catch (err) {
        throw new TransferUnavailableError(`cannot stage ${source} in ${this.dir}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      return info.size;
    } finally {
      await input.close();
    }
  }

  /**
   * Copies the staged file `name`, which the agent reported as `size` bytes, to the
   * local `destination` (a temp file beside it, renamed into place) with permission
   * bits `mode`. TransferRefusedError when it is not a plain file of this directory;
   * TransferUnavailableError when it is missing or not as big as reported (the
   * directory is not really shared).
   */
  async take(name: string, size: number, destination: string, mode: number): Promise<void> {
    const device = await this.checkDir(this.dir);
    let staged: FileHandle;
    try {
      staged = await open(this.pathOf(name), OPEN_STAGED);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ELOOP") throw new TransferRefusedError(`staged file ${name} in ${this.dir} is a symlink`);
      throw new TransferUnavailableError(`staged file ${name} is not in ${this.dir}: ${(err as Error).message}`);
    }
    try {
      const info = await staged.stat();
      if (!info.isFile()) throw new TransferRefusedError(`staged file ${name} in ${this.dir} is not a regular file`);
      if (info.dev !== device) throw new TransferRefusedError(`staged file ${name} is not on ${this.dir}'s filesystem`);
      if (info.size !== size) {
        throw new TransferUnavailableError(`staged file ${name} has ${info.size} bytes here, the agent wrote ${size}`);
      }
      const temp = path.join(
        path.dirname(destination),
        `.${path.basename(destination)}.${randomBytes(6).toString("hex")}.tether-copy`,
      );
      try {
        await copyFile(descriptorPath(staged), temp, constants.COPYFILE_EXCL);
        // The sandbox could have grown the file between our check and the copy.
        const copied = await stat(temp);
        if (copied.size !== size) {
          throw new TransferRefusedError(
            `staged file ${name} changed while it was copied (${copied.size} bytes, not ${size})`,
          );
        }
        await chmod(temp, mode);
        await rename(temp, destination);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
    } finally {
      await staged.close();
    }
  }

  /** Removes a staged file, whatever the sandbox made of it (unlink never follows a link); never throws. */
  async remove(name: string): Promise<void> {
    await rm(this.pathOf(name), { force: true }).catch(() => {});
    if (this.importDir) await rm(path.join(this.importDir, name), { force: true }).catch(() => {});
  }

  private pathOf(name: string): string {
    return path.join(this.dir, name);
  }

  /** The directory's device; it must be a real directory (the host made it; the sandbox cannot replace it). */
  private async checkDir(dir: string): Promise<number> {
    const info = await lstat(dir).catch((err: unknown) => {
      throw new TransferUnavailableError(`${dir} is not usable: ${(err as Error).message}`);
    });
    if (!info.isDirectory()) throw new TransferRefusedError(`${dir} is not a directory`);
    return info.dev;
  }
}

/**
 * Hard-links the file `source` resolves to as `staged`, if it is on the same filesystem
 * and still the file we opened (`opened`); false when it cannot be linked (then copy).
 */
async function linkSame(source: string, opened: Stats, staged: string): Promise<boolean> {
  try {
    // link(2) does not follow a symlink given as its source: link what it points to.
    await link(await realpath(source), staged);
  } catch {
    return false;
  }
  const linked = await lstat(staged).catch(() => undefined);
  if (linked?.ino === opened.ino && linked.dev === opened.dev) return true;
  // Replaced between open and link: copy what was opened instead.
  await rm(staged, { force: true });
  return false;
}

/**
 * The path that reopens exactly the file behind a descriptor, for fs.copyFile (which
 * takes paths): the name in the shared directory may point elsewhere by now.
 */
function descriptorPath(handle: FileHandle): string {
  return `/proc/self/fd/${handle.fd}`;
}
