import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { chmod, copyFile, link, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import type { PruneBundlesReport } from "@tether/bundle";
import {
  AGENT_CONTAINER_PORT,
  agentCommand,
  type BuiltBundle,
  buildBundle,
  DEFAULT_MOUNT_POINT,
  defaultBundleRoot,
  markBundleUsed,
} from "@tether/bundle";
import { ACCESS_TOKEN_HEADER } from "@tether/protocol";
import { connect } from "@tether/sdk";
import Docker from "dockerode";
import { waitForAgent } from "../../agent-health.js";
import {
  ImageNotFoundError,
  InvalidSandboxSpecError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxStartError,
  TetherHostError,
} from "../../errors.js";
import { tetherHome } from "../../home.js";
import { isAlive, type ProcessIdentity, processIdentity } from "../../process-identity.js";
import { isValidSandboxId, newSandboxId, SANDBOX_RUN_DIR, TOKEN_HANDOVER_NAME } from "../../sandbox-dir.js";
import type {
  ListFilter,
  LogChunk,
  LogOptions,
  SandboxBackend,
  SandboxInfo,
  SandboxSpec,
  SandboxState,
  StopOptions,
} from "../backend.js";
import { AGENT_PIDS_SHARE, DEFAULT_PIDS_LIMIT, imageCommand } from "../docker/container-config.js";
import { lastLines } from "../docker/log-stream.js";
import { readOutputLog } from "../process/output-log.js";
import {
  BackendMetas,
  EXIT_FILE,
  type ExitRecord,
  LAUNCH_FILE,
  type LaunchPlan,
  META_FILE,
  OUTPUT_FILE,
  ProcessSandboxDir,
  SUPERVISOR_FILE,
  type SupervisorRecord,
} from "../process/sandbox-files.js";
import { supervisorScript } from "../process/tetherd.js";
import { type ValidSpec, validateSpec } from "../spec.js";
import { bundleDisk, createOverlay, execLine, imageRootfs, pruneDisks, writeConfigDisk } from "./disks.js";
import { GUEST_BUSYBOX as BUSYBOX_ON_DISK, buildInitramfs, GUEST_TINI } from "./initramfs.js";
import { type Accelerator, detectAccelerator, qemuArgs } from "./qemu-command.js";
import { QmpClient } from "./qmp.js";
import { allocateTap, createTap, releaseAddress, removeTap, type TapAttachment, tapSupport } from "./tap-network.js";
import { findVmTools, type VmTools } from "./vm-tools.js";

/** Under TCG a boot takes seconds even on an idle machine, and much longer on a loaded one. */
const DEFAULT_READY_TIMEOUT_MS = 180_000;
const DEFAULT_STOP_TIMEOUT_S = 10;
const DEFAULT_MEMORY_BYTES = 512 << 20;
const START_ERROR_LOG_LINES = 30;
/** Migration's default bandwidth cap (32 MiB/s in QEMU 7.2) would make a pause take seconds per 100 MiB. */
const SNAPSHOT_BANDWIDTH = 8 * 1024 ** 3;
const SNAPSHOT_TIMEOUT_MS = 300_000;

/** The sandbox as created, `sandbox.json`. */
interface VmMeta {
  id: string;
  name: string;
  backend: "vm";
  image: string;
  imageId: string;
  labels: Record<string, string>;
  createdAt: number;
  memoryBytes: number;
  cpus: number;
  network: "none" | "bridge";
  /**
   * With network bridge where the host allows TAP: its TAP on Tether's bridge (outbound
   * through it, the user-mode NIC restricted); absent: user-mode NAT (see tap-network.ts).
   */
  tap?: TapAttachment;
  /** The root filesystem the overlay is over, and the bundle disk: the same at every start and restore. */
  baseDisk: string;
  bundleDisk: string;
  /**
   * exec.sh's line (see `execLine`), kept so that a fork's config disk boots as its
   * source's did when the fork is stopped and started afresh. Absent in older sandboxes.
   */
  exec?: string;
  /**
   * The snapshots (keys under `vm-snapshots`) its overlay is chained over, oldest first:
   * their frozen overlays are its disk's backing files, so none of them may go while it exists.
   */
  snapshots?: string[];
}

/**
 * A memory snapshot, `vm-snapshots/<key>/snapshot.json`, written last: its `memory` (the
 * migration stream: RAM and device state) and `root.qcow2` (the source's overlay as it was
 * at the pause, frozen: the source and every fork write into new overlays over it).
 */
interface VmSnapshotMeta {
  tag: string;
  sourceId: string;
  image: string;
  imageId: string;
  createdAt: number;
  memoryBytes: number;
  cpus: number;
  baseDisk: string;
  bundleDisk: string;
  exec?: string;
  /** The chain a fork's overlay is over: the source's, then this one. */
  snapshots: string[];
  /** The source's agent token, which a restored agent holds until the fork gives it its own (/init). */
  token: string;
  /** The source's TAP attachment: a fork has a TAP NIC too (the same devices), re-addressed by `adopt`. */
  tap?: TapAttachment;
  memoryBytesOnDisk: number;
}

/** `paused`: present once the memory snapshot is whole; the sandbox is then paused whatever QEMU does. */
interface PausedRecord {
  at: number;
  snapshotBytes: number;
  /** How long QEMU took to write the snapshot, ms. */
  writeMs: number;
}

const PAUSED_FILE = "paused";
const SNAPSHOT_FILE = "snapshot";
const OVERLAY_FILE = "root.qcow2";
const CONFIG_DISK_FILE = "config.img";
const QMP_SOCKET = "qmp.sock";
const SNAPSHOTS_DIR = "vm-snapshots";
const SNAPSHOT_META_FILE = "snapshot.json";
const SNAPSHOT_MEMORY_FILE = "memory";

/** The guest's view of things the host runs in it: busybox and tini are on the bundle disk. */
const GUEST_BUSYBOX = `${DEFAULT_MOUNT_POINT}/${BUSYBOX_ON_DISK}`;

/** The vm backend has no vsock here: the agent is reached over QEMU's user-mode network instead. */
export class VsockUnavailableError extends TetherHostError {
  constructor(readonly reason: string) {
    super(`the vm backend cannot use vsock: ${reason}; its agent is reached over TCP forwarded on 127.0.0.1`);
  }
}

/** What the agent transport of a VM is: only "tcp" (QEMU hostfwd on 127.0.0.1) exists today. */
export type VmTransport = "tcp";

export interface VmBackendOptions {
  /** TETHER_HOME; default `tetherHome()`. */
  home?: string;
  /** The engine images are exported from; default `new Docker()`. */
  docker?: Docker;
  /** The agent bundle; default `buildBundle()` into `bundleRoot`. */
  bundle?: () => Promise<BuiltBundle>;
  bundleRoot?: string;
  /** Where image and bundle disks, the initramfs and the accelerator probe's answer are kept; default `$TETHER_HOME/vm`. */
  cacheDir?: string;
}

interface Status {
  meta: VmMeta;
  state: SandboxState;
  supervisor?: SupervisorRecord;
  exit?: ExitRecord;
}

/**
 * Sandboxes as QEMU microVMs: the image's file system on a copy-on-write disk, the agent
 * bundle on a read-only one, a kernel from the host's packages and an initramfs of ours,
 * tetherd under tini as the guest's first process. QEMU runs under the same detached
 * supervisor as `local` sandboxes (its console is their output.log), which also relays the
 * sandbox's unix socket to the agent's forwarded port. Pause writes the VM's memory and
 * devices to `snapshot` and ends QEMU; resume restores them. Stateless like the others:
 * the directory and live processes are the truth.
 */
export class VmBackend implements SandboxBackend {
  readonly kind = "vm";
  readonly home: string;
  private readonly metas: BackendMetas<VmMeta>;
  readonly docker: Docker;
  /** Where disks, initramfs and the accelerator probe's answer are cached, shared by sandboxes. */
  readonly cacheDir: string;
  private readonly loadBundle: () => Promise<BuiltBundle>;
  private toolsPromise?: Promise<VmTools>;
  private bootPromise?: Promise<{ initramfs: string; accel: Accelerator }>;

  constructor(options: VmBackendOptions = {}) {
    this.home = options.home ?? tetherHome();
    this.metas = new BackendMetas(this.home, this.kind);
    this.docker = options.docker ?? new Docker();
    this.cacheDir = options.cacheDir ?? path.join(this.home, "vm");
    const root = options.bundleRoot ?? defaultBundleRoot();
    this.loadBundle = options.bundle ?? (() => buildBundle({ root }));
  }

  /** The host programs and kernel; VmToolsMissingError says what to install. */
  tools(): Promise<VmTools> {
    this.toolsPromise ??= findVmTools().catch((err) => {
      this.toolsPromise = undefined;
      throw err;
    });
    return this.toolsPromise;
  }

  /** The initramfs (built once) and the accelerator (a probe boot where /dev/kvm is there, cached). */
  boot(): Promise<{ initramfs: string; accel: Accelerator }> {
    this.bootPromise ??= (async () => {
      const tools = await this.tools();
      const initramfs = await buildInitramfs(tools, this.cacheDir);
      return { initramfs, accel: await detectAccelerator(tools, initramfs, this.cacheDir) };
    })().catch((err) => {
      this.bootPromise = undefined;
      throw err;
    });
    return this.bootPromise;
  }

  /** Agents are reached over TCP; vsock needs /dev/vhost-vsock and a host that can connect to it. */
  transport(): VmTransport {
    return "tcp";
  }

  /** Always throws: see VsockUnavailableError. A typed refusal, not a path that pretends. */
  vsock(): never {
    throw new VsockUnavailableError(
      "it is not implemented (and cannot be tested where no vsock connection is possible)",
    );
  }

  async create(input: SandboxSpec): Promise<SandboxInfo> {
    const spec = await validateSpec(input);
    this.check(spec);
    const id = spec.id ?? newSandboxId();
    const name = spec.name ?? `tether-${id}`;
    if (await this.metas.byName(name)) throw new InvalidSandboxSpecError(`the name ${name} is taken`);
    const snapshot = await this.findSnapshot(spec.image);
    if (snapshot) return this.fork(spec, id, name, snapshot);
    const [tools, image] = await Promise.all([this.tools(), this.inspectImage(spec.image)]);
    const dir = new ProcessSandboxDir(this.home, id);
    let token: string;
    try {
      token = await dir.create();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        throw new InvalidSandboxSpecError(`sandbox directory ${dir.path} already exists (id ${id} is taken)`);
      }
      throw err;
    }
    let tap: TapAttachment | undefined;
    try {
      // The guest gets its token from the config disk: no hand-over file on the host.
      await rm(path.join(dir.runDir, TOKEN_HANDOVER_NAME), { force: true });
      const bundle = await this.loadBundle();
      await markBundleUsed(bundle.dir).catch(() => {});
      const [baseDisk, bundleDiskFile] = await Promise.all([
        imageRootfs(this.docker, image, this.cacheDir, tools),
        bundleDisk(bundle.dir, this.cacheDir, tools),
      ]);
      await createOverlay(baseDisk, dir.file(OVERLAY_FILE), tools);
      const exec = execLine(guestEnv(image, spec), guestArgv(image, spec));
      tap = spec.network === "bridge" && (await tapSupport()).ok ? await this.allocateTap(id, dir) : undefined;
      await writeConfigDisk(
        dir.file(CONFIG_DISK_FILE),
        { token, hostname: id, exec, pidsMax: guestPidsMax(spec), ...(tap ? { tap } : {}) },
        tools,
      );
      const meta: VmMeta = {
        id,
        name,
        backend: "vm",
        image: spec.image,
        imageId: image.Id,
        labels: spec.labels,
        createdAt: Date.now(),
        memoryBytes: spec.memory ?? DEFAULT_MEMORY_BYTES,
        cpus: Math.max(1, Math.ceil(spec.cpus ?? 1)),
        network: spec.network,
        ...(tap ? { tap } : {}),
        baseDisk,
        bundleDisk: bundleDiskFile,
        exec,
      };
      await dir.writeJson(META_FILE, meta);
      await this.launch(dir, meta, spec.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
      return await this.inspect(id);
    } catch (err) {
      await this.kill(dir);
      if (tap) await releaseAddress(tap.address, dir.path);
      await dir.remove();
      throw err;
    }
  }

  async start(id: string): Promise<SandboxInfo> {
    const status = await this.require(id);
    if (status.state === "running") return this.inspect(status.meta.id);
    if (status.state === "paused") {
      await this.unpause(status.meta.id);
      return this.inspect(status.meta.id);
    }
    await this.launch(this.dir(status.meta.id), status.meta, DEFAULT_READY_TIMEOUT_MS);
    return this.inspect(status.meta.id);
  }

  /**
   * sync, then SIGTERM to the guest's PID 1 (tini passes it to tetherd, which stops the image's
   * command and exits; the guest kernel then panics and QEMU, told not to reboot, exits),
   * then QEMU is killed after the timeout. A paused sandbox's snapshot is dropped.
   */
  async stop(id: string, options: StopOptions = {}): Promise<void> {
    const status = await this.require(id);
    const dir = this.dir(status.meta.id);
    if (status.state === "paused") {
      await this.kill(dir);
      await this.dropSnapshot(dir);
      await dir.writeJson(EXIT_FILE, { code: null, signal: "SIGTERM", at: Date.now() } satisfies ExitRecord);
      return;
    }
    if (status.state !== "running" || !status.supervisor) return;
    const timeoutMs = (options.timeoutSeconds ?? DEFAULT_STOP_TIMEOUT_S) * 1000;
    const supervisor = status.supervisor;
    if (timeoutMs > 0) {
      // sync first: when PID 1 ends the kernel panics and QEMU exits at once, with ext4's
      // delayed writes still in the guest's memory (a file written moments before would come
      // back empty at the next boot).
      const b = GUEST_BUSYBOX;
      const signalled = await this.inGuest(
        dir,
        [b, "sh", "-c", `${b} sync && ${b} kill -TERM 1`],
        Math.min(timeoutMs, 10_000),
      )
        .then(() => true)
        .catch(() => false);
      if (signalled) await waitUntil(() => !isAlive(supervisor), timeoutMs);
    }
    await this.kill(dir);
  }

  /**
   * Writes the VM's memory and device state to `snapshot` (QMP migrate to a file, the
   * VM stopped first so it is one consistent pass) and ends QEMU: a paused sandbox holds
   * no process and no memory on the host. Its disk is its overlay, untouched until resume.
   */
  async pause(id: string): Promise<void> {
    const status = await this.require(id);
    if (status.state === "paused") return;
    if (status.state !== "running" || !status.supervisor)
      throw new SandboxNotRunningError(status.meta.id, status.state);
    const dir = this.dir(status.meta.id);
    const snapshot = dir.file(SNAPSHOT_FILE);
    const partial = `${snapshot}.partial`;
    const qmp = await QmpClient.connect(dir.file(QMP_SOCKET));
    const started = Date.now();
    try {
      await qmp.execute("stop", {});
      await qmp.execute("migrate-set-parameters", { "max-bandwidth": SNAPSHOT_BANDWIDTH });
      // QEMU 7.2 has no file: migration URI (8.2 added it): exec: runs this through /bin/sh.
      const handle = openSync(partial, "w", 0o600);
      closeSync(handle);
      await qmp.execute("migrate", { uri: `exec:cat > ${shellPath(partial)}` });
      const deadline = Date.now() + SNAPSHOT_TIMEOUT_MS;
      for (;;) {
        const info = await qmp.execute("query-migrate", {});
        if (info.status === "completed") break;
        if (info.status === "failed" || info.status === "cancelled") {
          throw new TetherHostError(
            `sandbox ${status.meta.id}: writing the snapshot failed: ${info["error-desc"] ?? info.status}`,
          );
        }
        if (Date.now() > deadline)
          throw new TetherHostError(`sandbox ${status.meta.id}: the snapshot took over ${SNAPSHOT_TIMEOUT_MS} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await rename(partial, snapshot);
      const record: PausedRecord = {
        at: Date.now(),
        snapshotBytes: (await stat(snapshot)).size,
        writeMs: Date.now() - started,
      };
      await dir.writeJson(PAUSED_FILE, record);
      await qmp.execute("quit", {}).catch(() => {});
    } catch (err) {
      // The VM goes on as it was.
      await rm(partial, { force: true });
      await qmp.execute("cont", {}).catch(() => {});
      throw err;
    } finally {
      qmp.close();
    }
    await waitUntil(() => !isAlive(status.supervisor as SupervisorRecord), 30_000);
    await this.kill(dir);
  }

  /**
   * Starts QEMU from the snapshot (-incoming): the guest's processes go on where they were.
   * Its clock is then set to the host's and the host's random bytes are mixed into its
   * pool, so a restored VM neither lives in the past nor repeats the randomness it had.
   */
  async unpause(id: string): Promise<void> {
    const status = await this.require(id);
    if (status.state === "running") return;
    if (status.state !== "paused") throw new SandboxNotRunningError(status.meta.id, status.state);
    const dir = this.dir(status.meta.id);
    await this.launch(dir, status.meta, DEFAULT_READY_TIMEOUT_MS, `exec:cat ${shellPath(dir.file(SNAPSHOT_FILE))}`);
    await this.dropSnapshot(dir);
    await this.reseed(dir).catch(() => {});
  }

  /** The last pause's figures (snapshot size, time to write), while paused. */
  async pauseRecord(id: string): Promise<PausedRecord | undefined> {
    const status = await this.require(id);
    return this.dir(status.meta.id).readJson<PausedRecord>(PAUSED_FILE);
  }

  /**
   * A memory snapshot named `tag`, that `create({ image: tag })` starts forks from: the
   * sandbox is paused (its RAM and device state written, QEMU ended), the memory stream is
   * linked into the snapshot, and its overlay is frozen there: the sandbox goes on over a
   * new empty overlay whose backing file is the frozen one, as every fork will, so nothing
   * writes into what the snapshot holds. A running sandbox is resumed after (about a pause
   * and a resume: seconds under TCG); a paused one stays paused.
   */
  async snapshot(id: string, tag: string): Promise<void> {
    let status = await this.require(id);
    if (status.state !== "running" && status.state !== "paused")
      throw new SandboxNotRunningError(status.meta.id, status.state);
    const key = snapshotKey(tag);
    const target = this.snapshotDir(key);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    try {
      await mkdir(target, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST")
        throw new InvalidSandboxSpecError(`a vm snapshot named ${tag} exists`);
      throw err;
    }
    const wasRunning = status.state === "running";
    const dir = this.dir(status.meta.id);
    const frozen = path.join(target, OVERLAY_FILE);
    let moved = false;
    try {
      if (wasRunning) await this.pause(status.meta.id);
      status = await this.require(status.meta.id);
      const [tools, token] = await Promise.all([this.tools(), dir.readToken()]);
      if (!token) throw new TetherHostError(`${dir.path} has no token`);
      const memory = path.join(target, SNAPSHOT_MEMORY_FILE);
      // A hard link: the sandbox's resume deletes its own name of the stream, not the snapshot's.
      await link(dir.file(SNAPSHOT_FILE), memory).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== "EXDEV") throw err;
        await copyFile(dir.file(SNAPSHOT_FILE), memory);
      });
      await rename(dir.file(OVERLAY_FILE), frozen);
      moved = true;
      await chmod(frozen, 0o400);
      await createOverlay(frozen, dir.file(OVERLAY_FILE), tools, "qcow2");
      moved = false;
      const chain = [...(status.meta.snapshots ?? []), key];
      await dir.writeJson(META_FILE, { ...status.meta, snapshots: chain } satisfies VmMeta);
      const meta: VmSnapshotMeta = {
        tag,
        sourceId: status.meta.id,
        image: status.meta.image,
        imageId: status.meta.imageId,
        createdAt: Date.now(),
        memoryBytes: status.meta.memoryBytes,
        cpus: status.meta.cpus,
        baseDisk: status.meta.baseDisk,
        bundleDisk: status.meta.bundleDisk,
        ...(status.meta.exec !== undefined ? { exec: status.meta.exec } : {}),
        snapshots: chain,
        token,
        ...(status.meta.tap ? { tap: status.meta.tap } : {}),
        memoryBytesOnDisk: (await stat(memory)).size,
      };
      // Written last, privately (it holds the source's token): a snapshot without it is not one.
      await writeFile(path.join(target, SNAPSHOT_META_FILE), `${JSON.stringify(meta)}\n`, { mode: 0o600 });
    } catch (err) {
      if (moved) await rename(frozen, dir.file(OVERLAY_FILE)).catch(() => {});
      await rm(target, { recursive: true, force: true });
      if (wasRunning) await this.unpause(status.meta.id).catch(() => {});
      throw err;
    }
    if (wasRunning) await this.unpause(status.meta.id);
  }

  /** Removes a memory snapshot; false while a sandbox's disk is chained over it (its source's or a fork's). */
  async removeSnapshot(tag: string): Promise<boolean> {
    const key = snapshotKey(tag);
    if (!(await this.readSnapshot(key))) return true;
    if ((await this.metas.all()).some((meta) => meta.snapshots?.includes(key))) return false;
    await rm(this.snapshotDir(key), { recursive: true, force: true });
    return true;
  }

  /**
   * Removes the cache's image and bundle disks no sandbox or snapshot here is over and none
   * used for `olderThanMs` (tether gc): each image's disk is as big as its file system.
   */
  async pruneBundles(olderThanMs: number): Promise<PruneBundlesReport> {
    const inUse = new Set<string>();
    for (const meta of await this.metas.all()) inUse.add(meta.baseDisk).add(meta.bundleDisk);
    const keys = await readdir(path.join(this.home, SNAPSHOTS_DIR)).catch(() => [] as string[]);
    for (const key of keys) {
      const snapshot = await this.readSnapshot(key);
      if (snapshot) inUse.add(snapshot.baseDisk).add(snapshot.bundleDisk);
    }
    return pruneDisks(this.cacheDir, inUse, olderThanMs);
  }

  /** The memory snapshot `image` names (a tag `snapshot` was given), if it is one. */
  async findSnapshot(image: string): Promise<VmSnapshotMeta | undefined> {
    const meta = await this.readSnapshot(snapshotKey(image));
    return meta?.tag === image ? meta : undefined;
  }

  private snapshotDir(key: string): string {
    return path.join(this.home, SNAPSHOTS_DIR, key);
  }

  private async readSnapshot(key: string): Promise<VmSnapshotMeta | undefined> {
    return readFile(path.join(this.snapshotDir(key), SNAPSHOT_META_FILE), "utf8")
      .then((text) => JSON.parse(text) as VmSnapshotMeta)
      .catch(() => undefined);
  }

  /**
   * A new sandbox restored from a memory snapshot: its own overlay over the frozen one, its
   * own token and config disk, QEMU started with -incoming on the snapshot's stream. The
   * guest's processes go on where the source's were; then it is made its own machine (see
   * `adopt`). The spec's env reaches commands run from then on (the agent's defaults); its
   * command, user and workdir do not apply (nothing is started afresh), and the memory and
   * CPUs are the snapshot's: a spec asking for others is refused.
   */
  private async fork(spec: ValidSpec, id: string, name: string, snapshot: VmSnapshotMeta): Promise<SandboxInfo> {
    if (spec.memory !== undefined && spec.memory !== snapshot.memoryBytes) {
      throw new InvalidSandboxSpecError(
        `a fork of ${snapshot.tag} has its snapshot's memory, ${snapshot.memoryBytes >> 20} MiB`,
      );
    }
    if (spec.cpus !== undefined && Math.max(1, Math.ceil(spec.cpus)) !== snapshot.cpus) {
      throw new InvalidSandboxSpecError(`a fork of ${snapshot.tag} has its snapshot's ${snapshot.cpus} CPUs`);
    }
    // The fork's devices are its snapshot's: a TAP NIC or not, whatever its network (with
    // network none, its TAP is on no bridge and down, the guest's NIC unaddressed and down).
    if (snapshot.tap) {
      const support = await tapSupport();
      if (!support.ok) {
        throw new InvalidSandboxSpecError(
          `${snapshot.tag} is of a vm on a TAP, which this host cannot make: ${support.reason}`,
        );
      }
    }
    const tools = await this.tools();
    const source = this.snapshotDir(snapshotKey(snapshot.tag));
    const dir = new ProcessSandboxDir(this.home, id);
    let token: string;
    try {
      token = await dir.create();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        throw new InvalidSandboxSpecError(`sandbox directory ${dir.path} already exists (id ${id} is taken)`);
      }
      throw err;
    }
    let tap: TapAttachment | undefined;
    try {
      await rm(path.join(dir.runDir, TOKEN_HANDOVER_NAME), { force: true });
      await createOverlay(path.join(source, OVERLAY_FILE), dir.file(OVERLAY_FILE), tools, "qcow2");
      // Read only when the fork is later stopped and booted afresh; a snapshot from before
      // exec lines were kept cannot boot so, and says it on the console.
      const exec = snapshot.exec ?? `echo "tether: ${snapshot.tag} keeps no boot command"; exit 1`;
      tap = snapshot.tap ? await this.allocateTap(id, dir) : undefined;
      // Off the bridge, the init is told only which NIC to leave alone.
      const guestTap = tap && (spec.network === "bridge" ? { tap } : { tap: { mac: tap.mac } });
      await writeConfigDisk(
        dir.file(CONFIG_DISK_FILE),
        { token, hostname: id, exec, pidsMax: guestPidsMax(spec), ...guestTap },
        tools,
      );
      const meta: VmMeta = {
        id,
        name,
        backend: "vm",
        image: spec.image,
        imageId: snapshot.imageId,
        labels: spec.labels,
        createdAt: Date.now(),
        memoryBytes: snapshot.memoryBytes,
        cpus: snapshot.cpus,
        network: spec.network,
        ...(tap ? { tap } : {}),
        baseDisk: snapshot.baseDisk,
        bundleDisk: snapshot.bundleDisk,
        exec,
        snapshots: snapshot.snapshots,
      };
      await dir.writeJson(META_FILE, meta);
      const memory = path.join(source, SNAPSHOT_MEMORY_FILE);
      await this.launch(dir, meta, spec.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS, `exec:cat ${shellPath(memory)}`);
      await this.adopt(
        dir,
        id,
        snapshot.token,
        token,
        spec.env,
        tap && snapshot.tap ? { from: snapshot.tap, to: tap, onBridge: spec.network === "bridge" } : undefined,
      );
      return await this.inspect(id);
    } catch (err) {
      await this.kill(dir);
      if (tap) await releaseAddress(tap.address, dir.path);
      await dir.remove();
      throw err;
    }
  }

  /**
   * Makes a restored fork its own machine: its agent takes the fork's token (and the spec's
   * env) through /init, presented the source's, which it still holds; then, as the fork's,
   * the guest gets a new /etc/machine-id and hostname, its clock set and the host's random
   * bytes mixed into its pool (two forks must not draw the same "random" numbers).
   */
  private async adopt(
    dir: ProcessSandboxDir,
    id: string,
    sourceToken: string,
    token: string,
    env: Record<string, string>,
    tap?: { from: TapAttachment; to: TapAttachment; onBridge: boolean },
  ): Promise<void> {
    await agentInit(dir.socketPath, sourceToken, {
      accessToken: token,
      ...(Object.keys(env).length > 0 ? { envVars: env } : {}),
    });
    const machineId = randomBytes(16).toString("hex");
    const b = GUEST_BUSYBOX;
    const script = [
      `${b} date -s @${Math.floor(Date.now() / 1000)} >/dev/null`,
      `${b} cat > /dev/urandom`,
      `${b} hostname ${id}`,
      `${b} mkdir -p /etc`,
      `echo ${machineId} > /etc/machine-id`,
    ];
    if (tap) {
      // Restored, the TAP NIC has its source's MAC and address: two forks on the bridge
      // would share them. It takes the fork's (the bridge learns the new MAC from its frames).
      const { from, to } = tap;
      script.push(
        `{ n=; for d in /sys/class/net/*; do [ "$(${b} cat $d/address)" = ${from.mac} ] && n=\${d##*/}; done; [ -n "$n" ]; }`,
        `${b} ip link set "$n" down`,
        `${b} ip link set "$n" address ${to.mac}`,
        `${b} ip addr flush dev "$n"`,
      );
      if (tap.onBridge) {
        script.push(
          `${b} ip link set "$n" up`,
          `${b} ip addr add ${to.address} dev "$n"`,
          `${b} ip route replace default via ${to.gateway}`,
        );
      }
    }
    const command = script.join(" && ");
    await this.inGuest(dir, [b, "sh", "-c", command], 30_000, randomBytes(64));
  }

  async remove(id: string): Promise<void> {
    const status = await this.status(id);
    const sandboxId = status?.meta.id ?? id;
    if (!isValidSandboxId(sandboxId)) return;
    const dir = this.dir(sandboxId);
    const meta = await dir.readJson<VmMeta>(META_FILE);
    if (meta && meta.backend !== this.kind) return;
    await this.kill(dir);
    if (meta?.tap) await releaseAddress(meta.tap.address, dir.path);
    await dir.remove();
  }

  async *logs(id: string, options: LogOptions = {}): AsyncGenerator<LogChunk> {
    const status = await this.require(id);
    const dir = this.dir(status.meta.id);
    yield* readOutputLog(dir.file(OUTPUT_FILE), options, async () => {
      const now = await this.status(status.meta.id);
      return now?.state === "running" || now?.state === "creating";
    });
  }

  async inspect(id: string): Promise<SandboxInfo> {
    return this.describe(await this.require(id));
  }

  async list(filter: ListFilter = {}): Promise<SandboxInfo[]> {
    const out: SandboxInfo[] = [];
    for (const meta of await this.metas.all()) {
      const status = await this.statusOf(meta);
      // A TAP left by a VM that died outside Tether (QEMU killed) goes when it is seen so.
      // Not while creating or paused: a start or resume in another process may have just made it.
      const dead = status.state === "stopped" || status.state === "error";
      if (status.meta.tap && dead && (await tapExists(status.meta.tap.ifname))) {
        await removeTap(status.meta.tap.ifname);
      }
      if (Object.entries(filter.labels ?? {}).some(([k, v]) => status.meta.labels[k] !== v)) continue;
      out.push(await this.describe(status));
    }
    return out;
  }

  private check(spec: ValidSpec): void {
    if (spec.mounts.length > 0)
      throw new InvalidSandboxSpecError("the vm backend has no host mounts (no 9p/virtiofs yet)");
    if (spec.runtime !== undefined)
      throw new InvalidSandboxSpecError("the vm backend has no OCI runtime: drop runtime");
    if (spec.readOnlyRootfs) throw new InvalidSandboxSpecError("the vm backend has no read-only root yet");
  }

  private async inspectImage(image: string): Promise<Docker.ImageInspectInfo> {
    try {
      return await this.docker.getImage(image).inspect();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) throw new ImageNotFoundError(image);
      throw err;
    }
  }

  /** A TAP attachment for `id` whose address no other vm sandbox on this host holds. */
  private async allocateTap(id: string, dir: ProcessSandboxDir): Promise<TapAttachment> {
    // This home's, claimed or not (VMs made before claims were).
    const taken = new Set<string>();
    for (const meta of await this.metas.all()) {
      if (meta.id !== id && meta.tap) taken.add(meta.tap.address);
    }
    return allocateTap(id, dir.path, taken);
  }

  private dir(id: string): ProcessSandboxDir {
    return new ProcessSandboxDir(this.home, id);
  }

  /** Starts QEMU under a detached supervisor and waits for the agent's health through the relayed socket. */
  private async launch(dir: ProcessSandboxDir, meta: VmMeta, timeoutMs: number, incoming?: string): Promise<void> {
    const [tools, boot] = await Promise.all([this.tools(), this.boot()]);
    for (const name of [EXIT_FILE, SUPERVISOR_FILE, QMP_SOCKET]) await dir.removeFile(name);
    await rm(dir.socketPath, { force: true });
    const agentPort = await freePort();
    if (meta.tap) await createTap(meta.tap, meta.network === "bridge");
    // The supervisor relays the agent's socket: a QEMU that outlived it (the supervisor
    // killed) would run on unreachable and read as running. The kernel kills it instead.
    const argv = [
      tools.setpriv,
      "--pdeathsig",
      "KILL",
      tools.qemu,
      ...qemuArgs({
        tools,
        accel: boot.accel,
        initramfs: boot.initramfs,
        memoryBytes: meta.memoryBytes,
        cpus: meta.cpus,
        rootOverlay: dir.file(OVERLAY_FILE),
        bundleDisk: meta.bundleDisk,
        configDisk: dir.file(CONFIG_DISK_FILE),
        qmpSocket: dir.file(QMP_SOCKET),
        agentPort,
        outbound: meta.network === "bridge",
        ...(meta.tap ? { tap: meta.tap } : {}),
        incoming,
      }),
    ];
    const plan: LaunchPlan = {
      argv,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      cwd: dir.path,
      relay: { socket: dir.socketPath, port: agentPort },
    };
    await dir.writeJson(LAUNCH_FILE, plan);
    const log = openSync(dir.file("supervisor.log"), "a", 0o600);
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(process.execPath, [supervisorScript(), dir.path], {
        detached: true,
        stdio: ["ignore", log, log],
        cwd: dir.path,
      });
    } finally {
      closeSync(log);
    }
    child.unref();
    const started = child.pid !== undefined ? processIdentity(child.pid) : undefined;
    if (incoming) await this.continueRestored(dir, meta, timeoutMs);
    const notReady = await waitForAgent(
      dir.socketPath,
      async () => {
        const exited = await dir.readJson<ExitRecord>(EXIT_FILE);
        return { alive: !exited && started !== undefined && isAlive(started), detail: exited?.error };
      },
      timeoutMs,
    );
    if (!notReady) return;
    const exit = await dir.readJson<ExitRecord>(EXIT_FILE);
    const reason =
      notReady.reason === "died"
        ? `QEMU exited (code ${exit?.code ?? "?"}) before the agent answered`
        : `its agent did not answer health within ${timeoutMs} ms`;
    await this.kill(dir);
    throw new SandboxStartError(meta.id, meta.image, reason, await this.tailLines(dir), exit?.code ?? undefined);
  }

  /**
   * Once QEMU has loaded the snapshot, lets the guest run: a VM stopped before it was saved
   * (as pause does, for one consistent pass) is restored stopped, and stays so until `cont`.
   */
  private async continueRestored(dir: ProcessSandboxDir, meta: VmMeta, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let qmp: QmpClient | undefined;
    while (!qmp) {
      qmp = await QmpClient.connect(dir.file(QMP_SOCKET), 2_000).catch(() => undefined);
      if (qmp) break;
      if (Date.now() > deadline || (await dir.has(EXIT_FILE))) {
        await this.kill(dir);
        throw new SandboxStartError(
          meta.id,
          meta.image,
          "QEMU's QMP socket never answered while restoring",
          await this.tailLines(dir),
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      for (;;) {
        const [status, migration] = await Promise.all([
          qmp.execute("query-status", {}),
          qmp.execute("query-migrate", {}),
        ]);
        if (status.running) return;
        if (migration.status === "completed" && status.status !== "inmigrate") break;
        if (migration.status === "failed" || Date.now() > deadline) {
          await this.kill(dir);
          const why =
            migration.status === "failed" ? `failed: ${migration["error-desc"] ?? "?"}` : `took over ${timeoutMs} ms`;
          throw new SandboxStartError(meta.id, meta.image, `restoring the snapshot ${why}`, await this.tailLines(dir));
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      await qmp.execute("cont", {});
    } finally {
      qmp.close();
    }
  }

  /** Runs `argv` as root in the guest through the agent; rejects when it cannot or it fails. */
  private async inGuest(dir: ProcessSandboxDir, argv: string[], timeoutMs: number, stdin?: Uint8Array): Promise<void> {
    const accessToken = await dir.readToken();
    if (!accessToken) throw new TetherHostError(`${dir.path} has no token`);
    const agent = await connect({ socket: dir.socketPath, accessToken, user: "root" });
    try {
      await agent.commands.run(argv, { user: "root", timeoutMs, ...(stdin ? { stdin } : {}) });
    } finally {
      agent.close();
    }
  }

  /** The host's time into the guest's clock, the host's randomness into its pool (see unpause). */
  private async reseed(dir: ProcessSandboxDir): Promise<void> {
    const seconds = Math.floor(Date.now() / 1000);
    await this.inGuest(
      dir,
      [
        GUEST_BUSYBOX,
        "sh",
        "-c",
        `${GUEST_BUSYBOX} date -s @${seconds} >/dev/null && ${GUEST_BUSYBOX} cat > /dev/urandom`,
      ],
      10_000,
      randomBytes(64),
    );
  }

  private async dropSnapshot(dir: ProcessSandboxDir): Promise<void> {
    await Promise.all([
      dir.removeFile(PAUSED_FILE),
      dir.removeFile(SNAPSHOT_FILE),
      dir.removeFile(`${SNAPSHOT_FILE}.partial`),
    ]);
  }

  private async tailLines(dir: ProcessSandboxDir): Promise<string[]> {
    const chunks: LogChunk[] = [];
    for await (const chunk of readOutputLog(dir.file(OUTPUT_FILE), {}, async () => false)) chunks.push(chunk);
    return lastLines(chunks, START_ERROR_LOG_LINES);
  }

  /** SIGKILL to the supervisor and QEMU, then its TAP removed; records the exit when the supervisor could not. */
  private async kill(dir: ProcessSandboxDir): Promise<void> {
    const supervisor = await dir.readJson<SupervisorRecord>(SUPERVISOR_FILE);
    const tap = (await dir.readJson<VmMeta>(META_FILE))?.tap;
    if (!supervisor) {
      if (tap) await removeTap(tap.ifname);
      return;
    }
    const processes: ProcessIdentity[] = [supervisor, ...(supervisor.agent ? [supervisor.agent] : [])];
    for (const p of processes) {
      if (isAlive(p)) {
        try {
          process.kill(p.pid, "SIGKILL");
        } catch {
          // Gone in between.
        }
      }
    }
    await waitUntil(() => processes.every((p) => !isAlive(p)), 5_000);
    if (tap) await removeTap(tap.ifname);
    if (!(await dir.has(EXIT_FILE))) {
      await dir
        .writeJson(EXIT_FILE, { code: null, signal: "SIGKILL", at: Date.now() } satisfies ExitRecord)
        .catch(() => {});
    }
  }

  private async status(idOrName: string): Promise<Status | undefined> {
    const meta = await this.metas.byIdOrName(idOrName);
    return meta && this.statusOf(meta);
  }

  private async statusOf(meta: VmMeta): Promise<Status> {
    const dir = this.dir(meta.id);
    if (await dir.has(PAUSED_FILE)) return { meta, state: "paused" };
    const supervisor = await dir.readJson<SupervisorRecord>(SUPERVISOR_FILE);
    if (supervisor && (isAlive(supervisor) || (supervisor.agent && isAlive(supervisor.agent)))) {
      return { meta, supervisor, state: "running" };
    }
    const exit = await dir.readJson<ExitRecord>(EXIT_FILE);
    if (exit) return { meta, supervisor, exit, state: exit.error ? "error" : "stopped" };
    return { meta, supervisor, state: supervisor ? "stopped" : "creating" };
  }

  private async require(id: string): Promise<Status> {
    const status = await this.status(id);
    if (!status) throw new SandboxNotFoundError(id);
    return status;
  }

  private async describe(status: Status): Promise<SandboxInfo> {
    const dir = this.dir(status.meta.id);
    const info: SandboxInfo = {
      id: status.meta.id,
      name: status.meta.name,
      backend: this.kind,
      image: status.meta.image,
      state: status.state,
      labels: status.meta.labels,
      createdAt: new Date(status.meta.createdAt),
      ...(status.meta.network === "bridge"
        ? { vmNetwork: status.meta.tap ? ("tap" as const) : ("user" as const) }
        : {}),
      backendId:
        status.supervisor?.agent && status.state === "running" ? `qemu pid ${status.supervisor.agent.pid}` : "",
    };
    const accessToken = await dir.readToken();
    if (accessToken) info.endpoint = { socket: dir.socketPath, accessToken };
    if (status.exit && status.state === "stopped" && status.exit.code !== null) info.exitCode = status.exit.code;
    return info;
  }
}

/** Env names that would configure the agent's own node: handed to its children as TETHER_ENV_<NAME> (as in Docker). */
function belongsToAgent(name: string): boolean {
  return name === "NODE_OPTIONS" || name.startsWith("LD_") || name.startsWith("TETHER_");
}

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** PID 1's whole environment: the image's, the spec's over it, the agent's own names moved aside. */
export function guestEnv(image: Docker.ImageInspectInfo, spec: ValidSpec): string[] {
  const merged = new Map<string, string>([["PATH", DEFAULT_PATH]]);
  for (const entry of image.Config.Env ?? []) {
    const eq = entry.indexOf("=");
    if (eq > 0) merged.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const [name, value] of Object.entries(spec.env)) merged.set(name, value);
  return [...merged].map(([name, value]) =>
    belongsToAgent(name) ? `TETHER_ENV_${name}=${value}` : `${name}=${value}`,
  );
}

/** The guest's pids.max: the spec's limit (Docker's default without one) plus the agent's share, as for a container. */
function guestPidsMax(spec: ValidSpec): number {
  return (spec.pidsLimit ?? DEFAULT_PIDS_LIMIT) + AGENT_PIDS_SHARE;
}

/** PID 1's argv: tini, then tetherd listening on the forwarded port, supervising the image's command. */
export function guestArgv(image: Docker.ImageInspectInfo, spec: ValidSpec): string[] {
  const flags = [
    "--host",
    "0.0.0.0",
    "--port",
    String(AGENT_CONTAINER_PORT),
    "--access-token-file",
    `${SANDBOX_RUN_DIR}/${TOKEN_HANDOVER_NAME}`,
    "--inherit-env",
  ];
  const user = spec.user ?? image.Config.User?.split(":")[0];
  if (user) flags.push("--user", user);
  const workdir = spec.workdir ?? image.Config.WorkingDir;
  if (workdir) flags.push("--workdir", workdir);
  const command = spec.command ?? imageCommand(image);
  if (spec.runCommand && command.length > 0) flags.push("--", ...command);
  return [`${DEFAULT_MOUNT_POINT}/${GUEST_TINI}`, "--", ...agentCommand(DEFAULT_MOUNT_POINT, flags)];
}

/** A snapshot's directory name: its tag (an image-like name with / and :) hashed. */
function snapshotKey(tag: string): string {
  return createHash("sha256").update(tag).digest("hex").slice(0, 24);
}

/** The agent's `POST /init` over its unix socket, presenting `token`; rejects unless it answers 204. */
function agentInit(socket: string, token: string, body: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
    session.on("error", reject);
    const request = session.request({
      ":method": "POST",
      ":path": "/init",
      "content-type": "application/json",
      [ACCESS_TOKEN_HEADER]: token,
    });
    let text = "";
    let status = 0;
    request.on("response", (headers) => {
      status = Number(headers[":status"]);
    });
    request.on("data", (d: Buffer) => {
      text += d.toString();
    });
    request.on("error", reject);
    request.on("end", () => {
      session.close();
      if (status === 204 || status === 200) resolve();
      else reject(new TetherHostError(`the restored agent refused /init (${status}): ${text.trim()}`));
    });
    request.end(JSON.stringify(body));
  });
}

/** A path quoted for the /bin/sh that runs QEMU's exec: migration commands. */
function shellPath(file: string): string {
  return `'${file.replace(/'/g, `'\\''`)}'`;
}

function tapExists(ifname: string): Promise<boolean> {
  return stat(`/sys/class/net/${ifname}`).then(
    () => true,
    () => false,
  );
}

/** A TCP port free on 127.0.0.1 now (QEMU binds it for hostfwd a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `done` every 50 ms until it holds or `timeoutMs` passes. */
async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
