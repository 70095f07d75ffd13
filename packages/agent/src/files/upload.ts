import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  createWriteStream,
  fchmodSync,
  lstatSync,
  openSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fsError, invalidPath } from "./errors.js";
import { writeMetadata } from "./metadata.js";
import { ensureDirs, type FileRights } from "./ownership.js";
import type { RecentUploads } from "./runtime.js";
import { isUploadTempName, UPLOAD_TEMP_SUFFIX, uploadJournal } from "./upload-journal.js";

/** How much an upload may have queued for the disk before the client is slowed down. */
const WRITE_BUFFER = 1 << 20;

export { isUploadTempName };

export interface StageOptions {
  /** Whose rights the file is written with (and so who owns it). */
  rights: FileRights;
  /** `user.e2b.*` xattrs to set; skipped where the filesystem refuses xattrs. */
  metadata?: Record<string, string>;
  /** Permission bits for the file (the `mode` query parameter), over an old file's. */
  mode?: number;
}

/**
 * An upload written in full to a temp file beside its target, waiting for `commit` (rename
 * over the target) or `discard`. Readers see the old file or the whole new one, whatever
 * happens to the agent or the client meanwhile. It is not fsynced: a sandbox's files need
 * not outlive a power cut, and flushing every upload cut its speed to a quarter (about
 * 200 MB/s against 730 MB/s here for 512 MiB).
 */
export class StagedFile {
  private done = false;

  constructor(
    /** The path the client asked for, as answered back. */
    readonly target: string,
    /** Where the file lands: the target, or what a symlink at the target points to. */
    readonly destination: string,
    readonly temp: string,
    /** False when the filesystem refused the metadata xattrs. */
    readonly metadataStored: boolean,
    private readonly rights: FileRights,
    /** The temp file's marker in the upload journal. */
    private readonly marker: string | undefined,
    /** True when no file was at the destination when the upload began. */
    readonly created: boolean,
  ) {}

  /**
   * Renames the temp file over the target, atomically replacing any old file, and has the
   * directory watchers report it as envd's in-place write before this resolves.
   */
  async commit(uploads: RecentUploads): Promise<void> {
    if (this.done) return;
    this.done = true;
    let ino: bigint;
    try {
      ino = this.rights.run(() => lstatSync(this.temp, { bigint: true }).ino);
      uploads.record(this.destination, ino);
      this.rights.run(() => renameSync(this.temp, this.destination));
    } catch (err) {
      removeTemp(this.temp, this.rights);
      throw fsError(err, "replace", this.target);
    } finally {
      await uploadJournal.remove(this.marker);
    }
    await uploads.renamed(this.destination, ino, this.created);
  }

  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    removeTemp(this.temp, this.rights);
    await uploadJournal.remove(this.marker);
  }
}

function removeTemp(temp: string, rights: FileRights): void {
  rights.run(() => rmSync(temp, { force: true }));
}

/**
 * Streams `source` into a temp file in the target's directory (parents created and
 * owned by the request user), with backpressure. On any failure,
 * including the client going away mid-body, the temp file is removed and the old
 * target, if any, is left untouched.
 */
export async function stageFile(source: Readable, target: string, options: StageOptions): Promise<StagedFile> {
  // Large writes: the file stream batches queued chunks into one writev per round trip.
  // The stream gets a descriptor of its own (Node's pipeline closes it on failure): the same
  // file reopened through /proc, the magic link to exactly the inode the user's rights created.
  return stageWith(target, options, (temp, fd) =>
    pipeline(
      source,
      createWriteStream(temp, { fd: openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY), highWaterMark: WRITE_BUFFER }),
    ),
  );
}

/**
 * The staging of `stageFile` with the temp file's bytes written by `fill` into `fd`, the
 * temp file opened (created, exclusively) with the request's rights. Same directories, ownership, mode
 * and symlink rules as a streamed upload; `defaultMode` is what a new file gets when no
 * `mode` is asked for and there is no old file to keep the bits of.
 */
export async function stageWith(
  target: string,
  options: StageOptions,
  fill: (temp: string, fd: number) => Promise<void>,
  defaultMode?: number,
): Promise<StagedFile> {
  const { rights } = options;
  ensureDirs(path.dirname(target), rights);
  // Every step by name runs with the request's rights: a link the user planted leads only
  // where the user could write anyway. The rest goes through the descriptor it opened.
  let fd: number | undefined;
  let temp: string | undefined;
  let marker: string | undefined;
  try {
    const existing = rights.run(() => statSync(target, { throwIfNoEntry: false }));
    if (existing?.isDirectory()) throw invalidPath(target, "path is a directory");
    // Writing to a symlink replaces the file it points to (envd writes through the link).
    const destination = existing ? rights.run(() => realpathSync(target)) : target;
    const dir = path.dirname(destination);
    temp = path.join(dir, `.${path.basename(destination)}.${randomBytes(6).toString("hex")}${UPLOAD_TEMP_SUFFIX}`);
    const created = temp;
    // Recorded before the file exists, so no kill leaves a temp file the next agent cannot find.
    marker = await uploadJournal.add(temp);
    fd = rights.run(() => openSync(created, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o666));
    await fill(temp, fd);
    // Replacing a file keeps its permission bits, as envd's in-place write does.
    if (existing) fchmodSync(fd, existing.mode & 0o7777);
    else if (options.mode === undefined && defaultMode !== undefined) fchmodSync(fd, defaultMode);
    if (options.mode !== undefined) fchmodSync(fd, options.mode);
    let metadataStored = true;
    if (options.metadata && Object.keys(options.metadata).length > 0) {
      metadataStored = await writeMetadata(`/proc/self/fd/${fd}`, options.metadata);
    }
    return new StagedFile(target, destination, temp, metadataStored, rights, marker, !existing);
  } catch (err) {
    if (temp && fd !== undefined) removeTemp(temp, rights);
    await uploadJournal.remove(marker);
    throw fsError(err, "write", target);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
