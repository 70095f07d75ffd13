import { createReadStream, createWriteStream } from "node:fs";
import { chmod, lstat, readdir, readlink, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Agent, type EntryInfo, NotFoundError, TransferUnavailableError } from "@tether/sdk";
import { InvalidCopyError } from "../errors.js";
import { checkEntryName, LocalDir } from "./local-dir.js";
import { SharedTransferDir } from "./shared-dir.js";

/** Batches the HTTP/2 stream's 16 KiB chunks into large writes (the 16 KiB default capped downloads at ~200 MB/s). */
const WRITE_BUFFER = 4 << 20;
/** What of a mode from the sandbox a copy out keeps: no setuid, setgid or sticky bit on the host. */
const PERMISSION_BITS = 0o777;

export interface SandboxCopyOptions {
  /**
   * The host side of a directory shared with the sandbox (the docker backend's run/),
   * through which files are copied in the kernel instead of streamed. Without it, or
   * once the agent says it cannot use it, files stream through the agent's HTTP API.
   */
  transferDir?: string;
  /** A directory the sandbox sees read-only, to stage files going in (see SharedTransferDir). */
  importDir?: string;
}

/**
 * Copies between this machine and a sandbox over the agent's file API (stat, list, and
 * files either through the directory the host shares with the sandbox, or streamed), so
 * it works in images without a shell or tar. Directories are walked entry by entry;
 * file permission bits are kept both ways. What `tether cp` runs.
 */
export class SandboxCopy {
  /** Notes for the user (entries that could not be copied as they are). */
  readonly warnings: string[] = [];
  /** Why files are streamed rather than copied through a shared directory (undefined while that works). */
  streamedBecause: string | undefined;
  private shared: SharedTransferDir | undefined;

  constructor(
    readonly agent: Agent,
    options: SandboxCopyOptions = {},
  ) {
    if (options.transferDir) this.shared = new SharedTransferDir(options.transferDir, options.importDir);
    else this.streamedBecause = "no directory is shared with the sandbox";
  }

  /** Clears what earlier copies left staged when their process died mid-copy. */
  async sweep(): Promise<void> {
    await this.shared?.sweep();
  }

  /** Closes the connection to the agent. */
  close(): void {
    this.agent.close();
  }

  /** Sandbox `source` to local `destination` (`-`: the file to stdout). */
  async out(source: string, destination: string): Promise<void> {
    const info = await this.agent.files.stat(source);
    if (destination === "-") {
      if (info.type !== "file")
        throw new InvalidCopyError(`${source} is a ${kindName(info)}: only a single file can go to stdout`);
      await writeToStdout(await this.agent.files.read(source, { format: "stream" }));
      return;
    }
    // The destination is the user's (a link there is theirs to follow); everything made
    // inside it is made relative to an opened directory and never through a link.
    const into = await stat(destination).catch(() => undefined);
    const [parentPath, name] = into?.isDirectory()
      ? [destination, path.posix.basename(source)]
      : [path.dirname(destination), path.basename(destination)];
    checkEntryName(name, `the copy of ${source} to ${destination}`);
    const parent = await LocalDir.open(parentPath);
    try {
      if (info.type === "dir") {
        const root = info.symlinkTarget ?? info.path;
        await this.dirOut(info.symlinkTarget ?? source, parent, name, info.mode, root, "");
      } else if (info.type === "file") await this.fileOut(source, parent, name, info.mode, info.size);
      else throw new InvalidCopyError(`${source} is a ${kindName(info)}: only files and directories can be copied`);
    } finally {
      await parent.close();
    }
  }

  /** Local `source` (`-`: stdin, to one file) to sandbox `destination`. */
  async in(source: string, destination: string): Promise<void> {
    const into = await this.agent.files.stat(destination).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    if (source === "-") {
      if (into?.type === "dir")
        throw new InvalidCopyError(`${destination} is a directory: give a file path to copy stdin to`);
      await this.agent.files.write(destination, process.stdin);
      return;
    }
    const info = await stat(source);
    const target =
      into?.type === "dir" ? path.posix.join(destination, path.basename(path.resolve(source))) : destination;
    if (info.isDirectory()) await this.dirIn(source, target);
    else if (info.isFile()) await this.fileIn(source, target, info.mode & 0o7777);
    else throw new InvalidCopyError(`${source} is not a file or directory`);
  }

  /**
   * Runs `copy` through the shared directory under a fresh staged name, removed whatever
   * happens. False when the file must be streamed instead: no shared directory, or the
   * agent does not see it (from then on every file streams).
   */
  private async viaShared(copy: (shared: SharedTransferDir, name: string) => Promise<void>): Promise<boolean> {
    const shared = this.shared;
    if (!shared) return false;
    const name = shared.newName();
    try {
      await copy(shared, name);
      return true;
    } catch (err) {
      if (!(err instanceof TransferUnavailableError)) throw err;
      this.fallBack(err);
      return false;
    } finally {
      await shared.remove(name);
    }
  }

  private async fileIn(source: string, target: string, mode: number): Promise<void> {
    const copied = await this.viaShared(async (shared, name) => {
      const size = await shared.stage(source, name);
      await this.agent.files.importStaged(name, target, { size, mode });
    });
    if (copied) return;
    await this.agent.files.write(target, createReadStream(source, { highWaterMark: 1 << 20 }), { mode });
  }

  /** Sandbox file `source` to entry `name` of `dir`, replacing (never following) what is there. */
  private async fileOut(source: string, dir: LocalDir, name: string, mode: number, size: number): Promise<void> {
    // The host copies while the agent writes: the two copies overlap. A file larger than
    // the room left in the shared directory (a bounded tmpfs) streams instead.
    const copied =
      size <= ((await this.shared?.room()) ?? 0) &&
      (await this.viaShared((shared, staged) =>
        shared.take(staged, this.agent.files.exportStaged(source, staged), dir.entry(name)),
      ));
    if (copied) return;
    const body = await this.agent.files.read(source, { format: "stream" });
    const temp = await dir.createTemp(name);
    try {
      await pipeline(body, createWriteStream("", { fd: temp.handle, highWaterMark: WRITE_BUFFER }));
      await chmod(temp.path, mode & PERMISSION_BITS);
      await dir.commit(temp.path, name);
    } catch (err) {
      await rm(temp.path, { force: true });
      throw err;
    }
  }

  /** From now on, stream: the directory is not shared after all (another machine, a runtime that hides it). */
  private fallBack(err: TransferUnavailableError): void {
    this.shared = undefined;
    this.streamedBecause = err.message;
  }

  /**
   * Sandbox directory `source` to entry `name` of `parent`. `root` is the copied tree's
   * real path in the sandbox, `relDir` this directory's place in it. Every name the agent
   * answers must be one path component, or the copy fails.
   */
  private async dirOut(
    source: string,
    parent: LocalDir,
    name: string,
    mode: number,
    root: string,
    relDir: string,
  ): Promise<void> {
    const dir = await parent.subdir(name);
    try {
      for (const entry of await this.agent.files.list(source)) {
        checkEntryName(entry.name, `the listing of ${source}`);
        if (entry.symlinkTarget !== undefined) {
          const text = linkText(entry.symlinkTarget, root, relDir);
          if (text !== undefined) await dir.link(entry.name, text);
          else
            this.warnings.push(`skipped ${entry.path}: a symlink to ${entry.symlinkTarget}, outside the copied tree`);
        } else if (entry.type === "dir") {
          await this.dirOut(entry.path, dir, entry.name, entry.mode, root, path.posix.join(relDir, entry.name));
        } else if (entry.type === "file") await this.fileOut(entry.path, dir, entry.name, entry.mode, entry.size);
        else this.warnings.push(`skipped ${entry.path}: a ${kindName(entry)} is not copied`);
      }
      // Last, so a read-only directory can still be filled first.
      await dir.chmod(mode & PERMISSION_BITS);
    } finally {
      await dir.close();
    }
  }

  private async dirIn(source: string, target: string): Promise<void> {
    await this.agent.files.makeDir(target);
    for (const entry of await readdir(source, { withFileTypes: true })) {
      const from = path.join(source, entry.name);
      const to = path.posix.join(target, entry.name);
      if (entry.isDirectory()) await this.dirIn(from, to);
      else if (entry.isFile()) {
        const { mode } = await lstat(from);
        await this.fileIn(from, to, mode & 0o7777);
      } else if (entry.isSymbolicLink()) {
        this.warnings.push(
          `skipped ${from}: a symlink (-> ${await readlink(from)}); the agent's file API cannot make links`,
        );
      } else this.warnings.push(`skipped ${from}: not a file or directory`);
    }
  }
}

/**
 * The agent reports a link by the real path it resolves to. A target inside the copied
 * tree becomes a relative link, so the copy stays self-contained; undefined for any other
 * (not recreated: on this machine it would point at the host's own files).
 */
function linkText(resolved: string, root: string, relDir: string): string | undefined {
  if (!path.posix.isAbsolute(resolved) || !path.posix.isAbsolute(root)) return undefined;
  const target = path.posix.normalize(resolved);
  const top = path.posix.normalize(root);
  if (target !== top && !target.startsWith(top === "/" ? "/" : `${top}/`)) return undefined;
  return path.posix.relative(path.posix.join(top, relDir), target) || ".";
}

function kindName(info: EntryInfo): string {
  if (info.symlinkTarget !== undefined && info.type === "unknown") return "dangling symlink";
  return info.type === "unknown" ? "special file" : info.type;
}

async function writeToStdout(body: Readable): Promise<void> {
  for await (const chunk of body) {
    if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once("drain", resolve));
  }
}
