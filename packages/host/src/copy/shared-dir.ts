import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, type FileHandle, lstat, open, readdir, rename, rm, statfs } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { TransferUnavailableError } from "@tether/sdk";
import { TetherHostError } from "../errors.js";

/** A staged file the sandbox side left in a shape the host refuses to read (a link, a device, another filesystem). */
export class TransferRefusedError extends TetherHostError {}

/** What the agent answers for a file it staged for the host. */
export interface StagedAnswer {
  size: number;
  /** Permission bits of the file in the sandbox. */
  mode: number;
}

const STAGED_PREFIX = "tether-xfer-";
/** The names `newName` hands out (the agent accepts only these). */
const STAGED_NAME = /^tether-xfer-[0-9a-f]{32}$/;
/** Staged files this old are leftovers of a host that died mid-copy. */
const STALE_AFTER_MS = 24 * 3600_000;

/** How much of a staged file the host copies per read while following the agent's writes. */
const FOLLOW_BUFFER = 4 << 20;

/** Opening a staged file: never through a link, never blocking on a FIFO, never taking a terminal. */
const OPEN_STAGED = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * The host's side of a directory it shares with a sandbox (the docker backend's run/,
 * mounted at /run/tether), for copies that skip the agent's HTTP stream: the agent moves
 * bytes with copy_file_range, the host by a kernel copy (in) or by following the agent's
 * writes with large reads (out). The sandbox is untrusted and can write into the
 * directory at any time, so only names we made are touched, staged files are opened
 * with O_NOFOLLOW and checked (regular file, this directory's device, the size the
 * agent reported) and copied from that descriptor, never by name, and never renamed or
 * linked out (the sandbox could still hold them open). Files going in are staged in
 * `importDir` when there is one: the sandbox sees it read-only, so it cannot swap what is
 * staged there for a link.
 */
export class SharedTransferDir {
  /** Reused by every `take` (copies of one SandboxCopy run one after another). */
  private buffer: Buffer | undefined;

  constructor(
    /** The directory on the host (the sandbox may write in it). */
    readonly dir: string,
    /** A directory the sandbox sees read-only, for files going in. */
    readonly importDir?: string,
  ) {}

  /** A fresh staged-file name (the agent accepts only this shape). */
  newName(): string {
    return `${STAGED_PREFIX}${randomBytes(16).toString("hex")}`;
  }

  /** The bytes the directory can still take (it may be a size-limited tmpfs); 0 when it cannot be asked. */
  async room(): Promise<number> {
    const fs = await statfs(this.dir).catch(() => undefined);
    return fs ? fs.bavail * fs.bsize : 0;
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
      try {
        // Always a copy (a reflink where the filesystem has them, else copy_file_range in
        // the kernel), never a hard link: the sandbox could keep a descriptor to a linked
        // inode and read the host's later in-place edits of its file. Nothing after this
        // touches the staged name but the agent and `remove`: in `dir` the sandbox may
        // have swapped it for a link already.
        await copyFile(descriptorPath(input), staged, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      } catch (err) {
        throw new TransferUnavailableError(`cannot stage ${source} in ${dir}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      return info.size;
    } finally {
      await input.close();
    }
  }

  /**
   * Copies the staged file `name` to the local `destination` (a temp file beside it,
   * renamed into place) while the agent is still writing it, so both copies run at once;
   * `exported` is the agent's answer (its size and permission bits), and only once it
   * has come and the bytes match it is the copy put in place. TransferRefusedError when
   * the name is not a plain file of this directory or it grew past that size;
   * TransferUnavailableError (or the agent's own error) when it never shows up here or
   * comes up short (the directory is not really shared).
   */
  async take(name: string, exported: Promise<StagedAnswer>, destination: string): Promise<void> {
    let answer: { ok: StagedAnswer } | { err: unknown } | undefined;
    const settled = exported.then(
      (ok) => {
        answer = { ok };
      },
      (err: unknown) => {
        answer = { err };
      },
    );
    const outcome = async (): Promise<StagedAnswer> => {
      await settled;
      if (answer && "ok" in answer) return answer.ok;
      throw answer?.err;
    };
    try {
      const device = await this.checkDir(this.dir);
      const staged = await this.openWhenThere(name, () => answer !== undefined, settled);
      if (!staged) {
        await outcome();
        throw new TransferUnavailableError(`staged file ${name} did not appear in ${this.dir}`);
      }
      try {
        const info = await staged.stat();
        if (!info.isFile()) throw new TransferRefusedError(`staged file ${name} in ${this.dir} is not a regular file`);
        if (info.dev !== device)
          throw new TransferRefusedError(`staged file ${name} is not on ${this.dir}'s filesystem`);
        await this.follow(staged, name, () => answer, settled, destination, outcome);
      } finally {
        await staged.close();
      }
    } finally {
      // Whatever happened here, the agent's answer is awaited (and its error not left unhandled).
      await settled;
    }
  }

  /** Opens the staged file once the agent has made it; undefined if the agent finished without it. */
  private async openWhenThere(
    name: string,
    finished: () => boolean,
    settled: Promise<void>,
  ): Promise<FileHandle | undefined> {
    for (;;) {
      const last = finished();
      try {
        return await open(this.pathOf(name), OPEN_STAGED);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ELOOP") throw new TransferRefusedError(`staged file ${name} in ${this.dir} is a symlink`);
        // Not made yet, or not yet handed to us (chowned) by the agent.
        if (code !== "ENOENT" && code !== "EACCES") {
          throw new TransferUnavailableError(`staged file ${name} cannot be opened: ${(err as Error).message}`);
        }
        if (last) return undefined;
        await Promise.race([settled, delay(1)]);
      }
    }
  }

  /** Copies from `staged` as it grows until it holds what the agent answered, then renames into place. */
  private async follow(
    staged: FileHandle,
    name: string,
    answer: () => { ok: StagedAnswer } | { err: unknown } | undefined,
    settled: Promise<void>,
    destination: string,
    outcome: () => Promise<StagedAnswer>,
  ): Promise<void> {
    const temp = path.join(
      path.dirname(destination),
      `.${path.basename(destination)}.${randomBytes(6).toString("hex")}.tether-copy`,
    );
    const out = await open(temp, "wx", 0o600);
    try {
      this.buffer ??= Buffer.allocUnsafe(FOLLOW_BUFFER);
      const buffer = this.buffer;
      let position = 0;
      let emptyReadsAfterAnswer = 0;
      for (;;) {
        // Once the agent has answered, never read more than one byte past its size: a
        // sandbox appending without end must not fill the host's disk.
        const known = answer();
        if (known && "err" in known) await outcome();
        const limit = known && "ok" in known ? Math.min(buffer.length, known.ok.size - position + 1) : buffer.length;
        const { bytesRead } = limit > 0 ? await staged.read(buffer, 0, limit, position) : { bytesRead: 0 };
        if (known && "ok" in known && position + bytesRead > known.ok.size) {
          throw new TransferRefusedError(`staged file ${name} grew past the ${known.ok.size} bytes the agent wrote`);
        }
        if (bytesRead > 0) {
          await out.write(buffer, 0, bytesRead, position);
          position += bytesRead;
          emptyReadsAfterAnswer = 0;
          continue;
        }
        if (known === undefined) {
          await Promise.race([settled, delay(1)]);
          continue;
        }
        const { size } = await outcome();
        if (position === size) break;
        // Once more after the answer: the agent's last bytes may have landed after our last read.
        if (emptyReadsAfterAnswer++ > 0) {
          throw new TransferUnavailableError(`staged file ${name} has ${position} bytes here, the agent wrote ${size}`);
        }
      }
      const { size, mode } = await outcome();
      if ((await staged.stat()).size !== size) {
        throw new TransferRefusedError(`staged file ${name} changed size while it was copied`);
      }
      // No setuid, setgid or sticky bit from the sandbox on the host.
      await out.chmod(mode & 0o777);
      await out.close();
      await rename(temp, destination);
    } catch (err) {
      await out.close().catch(() => {});
      await rm(temp, { force: true });
      throw err;
    }
  }

  /**
   * Removes staged files older than `maxAgeMs` (by ctime, set when they are staged):
   * what a host killed mid-copy left behind. Never throws.
   */
  async sweep(maxAgeMs = STALE_AFTER_MS): Promise<void> {
    const now = Date.now();
    for (const dir of [this.dir, ...(this.importDir ? [this.importDir] : [])]) {
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const name of names) {
        if (!STAGED_NAME.test(name)) continue;
        const info = await lstat(path.join(dir, name)).catch(() => undefined);
        if (info && now - info.ctimeMs > maxAgeMs) await rm(path.join(dir, name), { force: true }).catch(() => {});
      }
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
 * The path that reopens exactly the file behind a descriptor, for fs.copyFile (which
 * takes paths): the name in the shared directory may point elsewhere by now.
 */
function descriptorPath(handle: FileHandle): string {
  return `/proc/self/fd/${handle.fd}`;
}
