import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, lstat, realpath, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fsError, invalidPath } from "./errors.js";
import { writeMetadata } from "./metadata.js";
import { applyOwner, ensureDirs, type FileOwner } from "./ownership.js";
import type { RecentUploads } from "./runtime.js";

/** How much an upload may have queued for the disk before the client is slowed down. */
const WRITE_BUFFER = 1 << 20;

/** Suffix of the temp files uploads stream into; watchers ignore such names. */
const TEMP_SUFFIX = ".tether-upload";

/** True for the name of an upload's temp file (`.<name>.<random>.tether-upload`). */
export function isUploadTempName(name: string): boolean {
  return name.startsWith(".") && name.endsWith(TEMP_SUFFIX);
}

export interface StageOptions {
  owner: FileOwner;
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
      ino = (await lstat(this.temp, { bigint: true })).ino;
      uploads.record(this.destination, ino);
      await rename(this.temp, this.destination);
    } catch (err) {
      await rm(this.temp, { force: true });
      throw fsError(err, "replace", this.target);
    }
    await uploads.renamed(this.destination, ino, this.created);
  }

  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await rm(this.temp, { force: true });
  }
}

/**
 * Streams `source` into a temp file in the target's directory (parents created and
 * owned by the request user), with backpressure. On any failure,
 * including the client going away mid-body, the temp file is removed and the old
 * target, if any, is left untouched.
 */
export async function stageFile(source: Readable, target: string, options: StageOptions): Promise<StagedFile> {
  // Large writes: the file stream batches queued chunks into one writev per round trip.
  return stageWith(target, options, (temp) =>
    pipeline(source, createWriteStream(temp, { flags: "wx", mode: 0o666, highWaterMark: WRITE_BUFFER })),
  );
}

/**
 * The staging of `stageFile` with the temp file's bytes written by `fill`, which must
 * create `temp` exclusively (`wx` / COPYFILE_EXCL). Same directories, ownership, mode
 * and symlink rules as a streamed upload; `defaultMode` is what a new file gets when no
 * `mode` is asked for and there is no old file to keep the bits of.
 */
export async function stageWith(
  target: string,
  options: StageOptions,
  fill: (temp: string) => Promise<void>,
  defaultMode?: number,
): Promise<StagedFile> {
  await ensureDirs(path.dirname(target), options.owner);
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw invalidPath(target, "path is a directory");
  // Writing to a symlink replaces the file it points to (envd writes through the link).
  const destination = existing ? await realpath(target) : target;
  const dir = path.dirname(destination);

  const temp = path.join(dir, `.${path.basename(destination)}.${randomBytes(6).toString("hex")}${TEMP_SUFFIX}`);
  try {
    await fill(temp);
    // Replacing a file keeps its permission bits, as envd's in-place write does.
    if (existing) await chmod(temp, existing.mode & 0o7777);
    else if (options.mode === undefined && defaultMode !== undefined) await chmod(temp, defaultMode);
    if (options.mode !== undefined) await chmod(temp, options.mode);
    await applyOwner(temp, options.owner);
    let metadataStored = true;
    if (options.metadata && Object.keys(options.metadata).length > 0) {
      metadataStored = await writeMetadata(temp, options.metadata);
    }
    return new StagedFile(target, destination, temp, metadataStored, !existing);
  } catch (err) {
    await rm(temp, { force: true });
    throw fsError(err, "write", target);
  }
}
