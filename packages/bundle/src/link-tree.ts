import { chmod, copyFile, link, lstat, mkdir, readdir } from "node:fs/promises";
import path from "node:path";

/**
 * Fills the empty directory `to` with what `from` holds: every file hard-linked (one copy on
 * disk for both, and instant), or copied where a link cannot be made (another file system),
 * directories made with the same modes. Bundles are never changed in place (a new one is
 * written aside and renamed), so two roots may share their files' inodes.
 */
export async function linkTree(from: string, to: string): Promise<void> {
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) {
      await mkdir(target);
      await chmod(target, (await lstat(source)).mode & 0o7777);
      await linkTree(source, target);
    } else if (entry.isFile()) {
      await link(source, target).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== "EXDEV" && err.code !== "EPERM" && err.code !== "EMLINK") throw err;
        await copyFile(source, target);
        await chmod(target, (await lstat(source)).mode & 0o7777);
      });
    } else {
      throw new Error(`${source} is neither a file nor a directory: not linking a bundle that holds it`);
    }
  }
}
