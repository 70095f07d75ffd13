import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, mkdir, open, rename, rm, symlink } from "node:fs/promises";
import { TetherHostError } from "../errors.js";

/** A name from the sandbox that is not one path component, or an entry that would make the host follow a link. */
export class UnsafeEntryError extends TetherHostError {}

/** Opening a directory we write into: never through a link at its last component. */
const OPEN_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** A fresh file beside its final name: O_EXCL, so nothing that exists (a link included) is followed. */
const CREATE_TEMP = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Throws UnsafeEntryError unless `name` (as a sandbox's agent answered it) is one path
 * component: not empty, `.` or `..`, with no `/` and no NUL.
 */
export function checkEntryName(name: string, where: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new UnsafeEntryError(
      `refusing the entry name ${JSON.stringify(name)} in ${where}: not a single path component`,
    );
  }
}

/**
 * A directory on this machine held open, into which a copy out of a sandbox writes. Its
 * entries are reached as `/proc/self/fd/<fd>/<name>`: the kernel resolves the descriptor
 * to the directory itself, whatever its path has become, so only the last component is
 * looked up by name, and every call here refuses or replaces a link there, never follows
 * it (Node has no openat; these paths are its equivalent on Linux). A later copy into
 * the same destination therefore never writes through a link an earlier copy made.
 */
export class LocalDir {
  private constructor(
    private readonly handle: FileHandle,
    /** The directory's path, for messages only. */
    readonly shown: string,
  ) {}

  /** Opens the directory at `dir`, a path the user gave (a link there is theirs to follow). */
  static async open(dir: string): Promise<LocalDir> {
    return new LocalDir(await open(dir, constants.O_RDONLY | constants.O_DIRECTORY), dir);
  }

  /** The path that reaches entry `name` of this very directory. */
  entry(name: string): string {
    return `/proc/self/fd/${this.handle.fd}/${name}`;
  }

  /**
   * The subdirectory `name`, made (mode 0700 until `chmod`) unless it exists; an existing
   * entry that is not a real directory (a link to one included) is an UnsafeEntryError.
   */
  async subdir(name: string): Promise<LocalDir> {
    await mkdir(this.entry(name), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
    const shown = `${this.shown}/${name}`;
    try {
      return new LocalDir(await open(this.entry(name), OPEN_DIR), shown);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ELOOP" || code === "ENOTDIR") {
        throw new UnsafeEntryError(`${shown} exists and is not a directory: a copy never writes through a link`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  /**
   * A fresh temp file beside `name`, for content that then replaces `name` by `commit`
   * (a rename: a link in its way is replaced, not followed).
   */
  async createTemp(name: string): Promise<{ path: string; handle: FileHandle }> {
    const path = this.entry(`.${name}.${randomBytes(6).toString("hex")}.tether-copy`);
    return { path, handle: await open(path, CREATE_TEMP, 0o600) };
  }

  /** Puts the temp file `temp` in place as `name`. */
  async commit(temp: string, name: string): Promise<void> {
    await rename(temp, this.entry(name));
  }

  /** Makes (or replaces) the link `name` -> `target`, through a temp name and a rename. */
  async link(name: string, target: string): Promise<void> {
    const temp = this.entry(`.${name}.${randomBytes(6).toString("hex")}.tether-copy`);
    await symlink(target, temp);
    try {
      await rename(temp, this.entry(name));
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  /** Sets the directory's own permission bits (through its descriptor). */
  async chmod(mode: number): Promise<void> {
    await this.handle.chmod(mode);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
