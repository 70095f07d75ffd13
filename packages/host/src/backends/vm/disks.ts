import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import type Docker from "dockerode";
import { TetherHostError } from "../../errors.js";
import { BUNDLE_LABEL, CONFIG_LABEL, GUEST_BUSYBOX, GUEST_TINI, ROOT_LABEL } from "./initramfs.js";
import type { VmTools } from "./vm-tools.js";

const run = promisify(execFile);

/** A disk image could not be made; says which command failed and what it printed. */
export class VmDiskError extends TetherHostError {}

const MiB = 1 << 20;

/** Runs a tool, turning its failure into a VmDiskError with its stderr. */
async function tool(file: string, args: string[], what: string): Promise<string> {
  try {
    return (await run(file, args, { maxBuffer: 16 * MiB })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new VmDiskError(`${what}: ${file} ${args.join(" ")} failed: ${(e.stderr || e.message).trim()}`, {
      cause: err,
    });
  }
}

/**
 * A cached disk that is there, marked used now (its mtime): `pruneDisks` leaves a disk used
 * lately alone, so a create that just chose it cannot lose it before its sandbox records it.
 */
async function cached(file: string): Promise<boolean> {
  const now = new Date();
  return utimes(file, now, now).then(
    () => true,
    () => false,
  );
}

/** The cache's subdirectories of shared disks: images' root filesystems, agent bundles. */
const DISK_KINDS = ["images", "bundles"] as const;

/**
 * Removes the cache's image and bundle disks that no sandbox or snapshot is over (`inUse`:
 * their paths) and that were not used for `olderThanMs`, as `pruneBundles` does for
 * Docker's bundle directories.
 */
export async function pruneDisks(
  cacheDir: string,
  inUse: ReadonlySet<string>,
  olderThanMs: number,
  now = Date.now(),
): Promise<{ removed: { dir: string; bytes: number }[]; kept: { dir: string; reason: "in use" | "recently used" }[] }> {
  const removed: { dir: string; bytes: number }[] = [];
  const kept: { dir: string; reason: "in use" | "recently used" }[] = [];
  for (const kind of DISK_KINDS) {
    const dir = path.join(cacheDir, kind);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith(".ext4"))) {
      const file = path.join(dir, name);
      if (inUse.has(file)) {
        kept.push({ dir: file, reason: "in use" });
        continue;
      }
      const info = await stat(file).catch(() => undefined);
      if (!info) continue;
      if (now - info.mtimeMs < olderThanMs) {
        kept.push({ dir: file, reason: "recently used" });
        continue;
      }
      await rm(file, { force: true });
      removed.push({ dir: file, bytes: info.size });
    }
  }
  return { removed, kept };
}

/** A temporary name next to `target`, renamed over it once complete: a cache entry is whole or absent. */
function tempFor(target: string): string {
  return `${target}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
}

/** Bytes a directory's files take (du's apparent size). */
async function treeBytes(dir: string): Promise<number> {
  const out = await tool("du", ["-sb", dir], "measuring a root filesystem");
  return Number(out.split("\t")[0]) || 0;
}

/**
 * The size of an ext4 file system for `bytes` of files, with room for the sandbox to
 * write: the file is sparse, so unwritten room costs no disk.
 */
function fsSize(bytes: number, minimum: number): number {
  const size = Math.max(minimum, bytes * 2 + 256 * MiB);
  return Math.ceil(size / MiB) * MiB;
}

/**
 * An ext4 image of `image`'s file system (`docker export` of a container made from it,
 * never started), cached under `cacheDir` by the image's id (its content digest): every
 * sandbox of one image shares it read-only, each through its own qcow2 overlay.
 */
export async function imageRootfs(
  docker: Docker,
  image: Docker.ImageInspectInfo,
  cacheDir: string,
  tools: VmTools,
): Promise<string> {
  const digest = image.Id.replace(/^sha256:/, "");
  const target = path.join(cacheDir, "images", `${digest}.ext4`);
  if (await cached(target)) return target;
  await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  const temp = tempFor(target);
  const tree = `${temp}.d`;
  await mkdir(tree, { mode: 0o755 });
  // A command is needed to create a container; this one never starts.
  const container = await docker.createContainer({ Image: image.Id, Entrypoint: ["/"], Cmd: [], Labels: {} });
  try {
    const exported = (await container.export()) as NodeJS.ReadableStream;
    const tar = spawn("tar", ["-x", "--numeric-owner", "-C", tree], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    tar.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => tar.on("close", resolve));
    await pipeline(exported, tar.stdin);
    const code = await exited;
    if (code !== 0) throw new VmDiskError(`unpacking the export of ${image.Id}: tar exited ${code}: ${stderr.trim()}`);
    const size = fsSize(await treeBytes(tree), 1024 * MiB);
    await tool(
      tools.mke2fs,
      ["-q", "-F", "-t", "ext4", "-L", ROOT_LABEL, "-E", "root_owner=0:0", "-d", tree, temp, `${size / 1024}k`],
      `making the root filesystem of ${image.Id}`,
    );
    await rename(temp, target);
    return target;
  } finally {
    await container.remove({ force: true }).catch(() => {});
    await rm(tree, { recursive: true, force: true });
    await rm(temp, { force: true });
  }
}

/**
 * The agent bundle as a read-only ext4 disk (mounted at /.tether), with tini added at
 * vm-init/tini (the guest's PID 1) and vm-init/busybox (what the host runs in any guest:
 * the signal that stops it, the clock set after a restore); cached by the bundle's
 * directory name (its content hash) and those two files' sizes.
 */
export async function bundleDisk(bundleDir: string, cacheDir: string, tools: VmTools): Promise<string> {
  const [tini, busybox] = await Promise.all([stat(tools.tini), stat(tools.busybox)]);
  const target = path.join(cacheDir, "bundles", `${path.basename(bundleDir)}-${tini.size}-${busybox.size}.ext4`);
  if (await cached(target)) return target;
  await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  const temp = tempFor(target);
  try {
    const size = Math.ceil(((await treeBytes(bundleDir)) * 1.25 + tini.size + busybox.size + 32 * MiB) / MiB) * MiB;
    // No journal: it is mounted read-only and never replayed.
    await tool(
      tools.mke2fs,
      [
        "-q",
        "-F",
        "-t",
        "ext4",
        "-O",
        "^has_journal",
        "-L",
        BUNDLE_LABEL,
        "-E",
        "root_owner=0:0",
        "-d",
        bundleDir,
        temp,
        `${size / 1024}k`,
      ],
      "making the agent bundle disk",
    );
    // debugfs adds tini without copying the bundle into a staging tree first.
    const debugfs = path.join(path.dirname(tools.mke2fs), "debugfs");
    const dir = path.dirname(GUEST_TINI);
    await tool(debugfs, ["-w", "-R", `mkdir ${dir}`, temp], "adding tini to the bundle disk");
    for (const [source, name] of [
      [tools.tini, GUEST_TINI],
      [tools.busybox, GUEST_BUSYBOX],
    ]) {
      for (const request of [
        `write ${source} ${name}`,
        `sif ${name} mode 0100755`,
        `sif ${name} uid 0`,
        `sif ${name} gid 0`,
      ]) {
        await tool(debugfs, ["-w", "-R", request, temp], `adding ${name} to the bundle disk`);
      }
    }
    await rename(temp, target);
    return target;
  } finally {
    await rm(temp, { force: true });
  }
}

/**
 * A qcow2 overlay over `base` (read-only to it): the sandbox's own writes, and nothing else,
 * go here. `base` is the image's raw disk, or (a fork, a snapshotted sandbox) the frozen
 * qcow2 overlay of a snapshot.
 */
export async function createOverlay(
  base: string,
  overlay: string,
  tools: VmTools,
  baseFormat: "raw" | "qcow2" = "raw",
): Promise<void> {
  await tool(
    tools.qemuImg,
    ["create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, overlay],
    "making the overlay",
  );
  await chmod(overlay, 0o600);
}

/** What the config disk carries into the guest. */
export interface GuestConfig {
  token: string;
  hostname: string;
  /** A POSIX shell line that execs PID 1 (see `execLine`). */
  exec: string;
  /**
   * The TAP NIC's MAC, `address/prefix` and gateway, when the VM has one (the init configures
   * it); a MAC alone: a NIC to leave unconfigured (a network-none fork of a TAP VM).
   */
  tap?: { mac: string; address?: string; gateway?: string };
  /** pids.max of the cgroup the init puts itself (and so every guest process) in. */
  pidsMax?: number;
}

/**
 * The config disk: a small ext4 image (mode 0600, in the sandbox's 0700 directory) with
 * the token, the hostname, exec.sh and the pids limit; the init reads it before the image's root is
 * entered, and nothing of it is on any command line.
 */
export async function writeConfigDisk(file: string, config: GuestConfig, tools: VmTools): Promise<void> {
  const staging = `${file}.d`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { mode: 0o700 });
  try {
    await Promise.all([
      writeFile(path.join(staging, "token"), `${config.token}\n`, { mode: 0o600 }),
      writeFile(path.join(staging, "hostname"), `${config.hostname}\n`, { mode: 0o600 }),
      writeFile(path.join(staging, "exec.sh"), `${config.exec}\n`, { mode: 0o600 }),
      ...(config.pidsMax !== undefined
        ? [writeFile(path.join(staging, "pids"), `${config.pidsMax}\n`, { mode: 0o600 })]
        : []),
      ...(config.tap
        ? [
            writeFile(
              path.join(staging, "tap"),
              `${config.tap.mac} ${config.tap.address ?? ""} ${config.tap.gateway ?? ""}\n`,
              {
                mode: 0o600,
              },
            ),
          ]
        : []),
    ]);
    // Made 0600 first: mke2fs keeps an existing file's mode.
    const handle = await open(file, "w", 0o600);
    await handle.truncate(4 * MiB);
    await handle.close();
    await chmod(file, 0o600);
    await tool(
      tools.mke2fs,
      ["-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", CONFIG_LABEL, "-E", "root_owner=0:0", "-d", staging, file],
      "making the config disk",
    );
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** `value` quoted for a POSIX shell. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** exec.sh's line: PID 1 becomes tini (via switch_root) in the image's root, with exactly `env`. */
export function execLine(env: readonly string[], argv: readonly string[]): string {
  return ["exec", "env", "-i", ...env, "/bin/busybox", "switch_root", "/newroot", ...argv]
    .map((a, i) => (i < 3 ? a : shellQuote(a)))
    .join(" ");
}
