import { access, constants, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { TetherHostError } from "../../errors.js";

/** What the vm backend runs on the host, each found on PATH (or in /usr/sbin, /sbin: mke2fs lives there). */
export interface VmTools {
  qemu: string;
  qemuImg: string;
  mke2fs: string;
  /** A statically linked busybox: the initramfs's shell and tools. */
  busybox: string;
  /** tini, statically linked: PID 1 in the guest (node cannot be a correct PID 1, as in Docker). */
  tini: string;
  /** util-linux's setpriv: QEMU runs under --pdeathsig, so it does not outlive its supervisor. */
  setpriv: string;
  kernel: VmKernel;
}

/** A kernel image and its modules directory (for virtio drivers built as modules). */
export interface VmKernel {
  /** e.g. 6.1.0-57-cloud-amd64 */
  version: string;
  image: string;
  modulesDir: string;
}

/** One thing the vm backend needs that this host lacks, and how to get it. */
export interface MissingTool {
  what: string;
  install: string;
}

/** The vm backend cannot run here; `missing` says what to install. */
export class VmToolsMissingError extends TetherHostError {
  constructor(readonly missing: MissingTool[]) {
    super(`the vm backend needs: ${missing.map((m) => `${m.what} (${m.install})`).join("; ")}`);
  }
}

const EXTRA_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

async function executable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** The first of `names` found on PATH or in the sbin directories. */
export async function findProgram(...names: string[]): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const name of names) {
    if (name.includes("/")) {
      if (await executable(name)) return name;
      continue;
    }
    for (const dir of dirs) {
      const file = path.join(dir, name);
      if (await executable(file)) return file;
    }
  }
  return undefined;
}

/**
 * The kernel to boot: TETHER_VM_KERNEL (an image whose modules are in
 * /usr/lib/modules/<version>, the version read from its name), else the newest
 * /boot/vmlinuz-* with a modules directory, Debian's cloud flavour first (it boots
 * fastest: fewer drivers probe).
 */
export async function findKernel(env: NodeJS.ProcessEnv = process.env): Promise<VmKernel | undefined> {
  const candidates: string[] = [];
  if (env.TETHER_VM_KERNEL) candidates.push(env.TETHER_VM_KERNEL);
  else {
    const names = await readdir("/boot").catch(() => [] as string[]);
    const kernels = names.filter((n) => n.startsWith("vmlinuz-"));
    kernels.sort((a, b) => {
      const cloud = Number(b.includes("-cloud-")) - Number(a.includes("-cloud-"));
      return cloud !== 0 ? cloud : b.localeCompare(a, undefined, { numeric: true });
    });
    candidates.push(...kernels.map((n) => path.join("/boot", n)));
  }
  for (const image of candidates) {
    const version = path.basename(image).replace(/^vmlinuz-/, "");
    const modulesDir = path.join("/usr/lib/modules", version);
    const readable = await access(image, constants.R_OK).then(
      () => true,
      () => false,
    );
    const hasModules = await stat(path.join(modulesDir, "modules.dep")).then(
      () => true,
      () => false,
    );
    if (readable && hasModules) return { version, image, modulesDir };
  }
  return undefined;
}

/** Everything the vm backend needs, or VmToolsMissingError listing each thing missing with its Debian package. */
export async function findVmTools(): Promise<VmTools> {
  const [qemu, qemuImg, mke2fs, busybox, tini, setpriv, kernel] = await Promise.all([
    findProgram("qemu-system-x86_64"),
    findProgram("qemu-img"),
    findProgram("mke2fs"),
    findProgram("/bin/busybox", "/usr/bin/busybox"),
    findProgram("tini-static"),
    findProgram("setpriv"),
    findKernel(),
  ]);
  const missing: MissingTool[] = [];
  if (!qemu) missing.push({ what: "qemu-system-x86_64", install: "apt-get install qemu-system-x86" });
  if (!qemuImg) missing.push({ what: "qemu-img", install: "apt-get install qemu-utils" });
  if (!mke2fs) missing.push({ what: "mke2fs", install: "apt-get install e2fsprogs" });
  if (!busybox) missing.push({ what: "a static busybox", install: "apt-get install busybox-static" });
  if (!tini) missing.push({ what: "tini-static", install: "apt-get install tini" });
  if (!setpriv) missing.push({ what: "setpriv", install: "apt-get install util-linux" });
  if (!kernel) {
    missing.push({
      what: "a kernel in /boot with its modules (or TETHER_VM_KERNEL)",
      install: "apt-get install linux-image-cloud-amd64",
    });
  }
  if (!qemu || !qemuImg || !mke2fs || !busybox || !tini || !setpriv || !kernel) throw new VmToolsMissingError(missing);
  return { qemu, qemuImg, mke2fs, busybox, tini, setpriv, kernel };
}
