import { createHash } from "node:crypto";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { type CpioEntry, cpioArchive } from "./cpio.js";
import type { VmTools } from "./vm-tools.js";

/** Filesystem labels the init finds its disks by (virtio-mmio's order is not something to rely on). */
export const ROOT_LABEL = "tether-root";
export const BUNDLE_LABEL = "tether-bundle";
export const CONFIG_LABEL = "tether-config";

/** What a probe boot prints on the console once its init runs (see `tether.mode=probe`). */
export const PROBE_MARKER = "TETHER-VM-PROBE-OK";

/** Where, on the bundle disk (mounted at /.tether), tini is: the guest's PID 1. */
export const GUEST_TINI = "vm-init/tini";
/** Where, on the bundle disk, busybox is: the host's tool in any guest (see VmBackend.stop and reseed). */
export const GUEST_BUSYBOX = "vm-init/busybox";

/** The guest's address and gateway on QEMU's user-mode network (its defaults). */
export const GUEST_ADDRESS = "10.0.2.15";
const GUEST_GATEWAY = "10.0.2.2";

/**
 * The virtio drivers the guest needs, loaded in this order after their dependencies:
 * microvm's devices are virtio-mmio; blk for the disks, net for the agent's transport,
 * rng so a restored VM draws fresh entropy from the host.
 */
const MODULES = ["virtio_mmio", "virtio_blk", "virtio_net", "virtio-rng"];

/**
 * /init: mounts the disks, configures the network, hands the token to the agent through a
 * tmpfs, then becomes (switch_root) tini running tetherd in the image's root, as Docker's
 * init would. Everything the sandbox's command line and environment need comes from the
 * config disk's exec.sh; the token never appears on a command line (host or guest).
 */
const INIT_SCRIPT = `#!/bin/busybox sh
# Tether's VM init. Written by @tether/host (backends/vm/initramfs.ts).
/bin/busybox mkdir -p /proc /sys /dev /newroot /cfg /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "tether-init: $*" >/dev/console; reboot -f; sleep 5; }
cmdline=$(cat /proc/cmdline)
mmio=""
for word in $cmdline; do
  case "$word" in virtio_mmio.device=*) mmio="$mmio \${word#virtio_mmio.}" ;; esac
done
for module in $(cat /modules/order); do
  params=""
  [ "$module" = virtio_mmio ] && params=$mmio
  insmod /modules/$module.ko $params || fail "cannot load $module"
done
case " $cmdline " in *" tether.mode=probe "*) echo ${PROBE_MARKER}; reboot -f ;; esac
disk() {
  i=0
  while [ $i -lt 100 ]; do
    dev=$(findfs LABEL=$1 2>/dev/null) && { echo "$dev"; return 0; }
    i=$((i + 1)); sleep 0.05
  done
  return 1
}
root=$(disk ${ROOT_LABEL}) || fail "no root disk"
bundle=$(disk ${BUNDLE_LABEL}) || fail "no agent bundle disk"
config=$(disk ${CONFIG_LABEL}) || fail "no config disk"
mount -t ext4 -o rw "$root" /newroot || fail "cannot mount the root filesystem"
mount -t ext4 -o ro "$config" /cfg || fail "cannot mount the config disk"
mkdir -p /newroot/.tether /newroot/proc /newroot/sys /newroot/dev /newroot/run/tether /newroot/tmp
mount -t ext4 -o ro "$bundle" /newroot/.tether || fail "cannot mount the agent bundle"
mount -t tmpfs -o mode=0700,size=1m tether-run /newroot/run/tether
cp /cfg/token /newroot/run/tether/token && chmod 600 /newroot/run/tether/token || fail "cannot hand over the token"
cp /cfg/exec.sh /exec.sh
hostname "$(cat /cfg/hostname)"
tap=""
[ -f /cfg/tap ] && tap=$(cat /cfg/tap)
pids=""
[ -f /cfg/pids ] && pids=$(cat /cfg/pids)
umount /cfg
ip link set lo up
# The user-mode NIC (the agent's, by its forwarded port) is the one that is not the TAP's.
set -- $tap
user=""; tapdev=""
for dev in /sys/class/net/*; do
  name=\${dev##*/}
  [ "$name" = lo ] && continue
  if [ -n "$tap" ] && [ "$(cat $dev/address)" = "$1" ]; then tapdev=$name; else user=$name; fi
done
[ -n "$user" ] && ip link set "$user" up && ip addr add ${GUEST_ADDRESS}/24 dev "$user" || fail "cannot configure the user-mode NIC"
if [ -n "$2" ]; then
  # Outbound through the TAP; the user-mode NIC, restricted, keeps only its subnet.
  [ -n "$tapdev" ] && ip link set "$tapdev" up && ip addr add "$2" dev "$tapdev" && ip route add default via "$3" ||
    fail "cannot configure the TAP NIC"
else
  ip route add default via ${GUEST_GATEWAY} || fail "cannot route through the user-mode NIC"
fi
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
if [ -n "$pids" ]; then
  # As Docker's --pids-limit: this init (then tini, tetherd and every command) in a cgroup
  # with pids.max, so a fork bomb stops there and the agent keeps its share.
  cg=/newroot/sys/fs/cgroup
  mount -t cgroup2 cgroup2 $cg && echo +pids > $cg/cgroup.subtree_control && mkdir $cg/sandbox &&
    echo "$pids" > $cg/sandbox/pids.max && echo $$ > $cg/sandbox/cgroup.procs || fail "cannot set the pids limit"
fi
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
. /exec.sh
fail "exec.sh returned"
`;

/** The modules to load, dependencies first, as paths relative to the modules directory. */
export async function moduleOrder(modulesDir: string, wanted: readonly string[] = MODULES): Promise<string[]> {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of (await readFile(path.join(modulesDir, "modules.dep"), "utf8")).split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const file = line.slice(0, colon);
    deps.set(
      file,
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
    byName.set(moduleName(file), file);
  }
  const order: string[] = [];
  const visit = (file: string) => {
    if (order.includes(file)) return;
    for (const dep of deps.get(file) ?? []) visit(dep);
    order.push(file);
  };
  for (const name of wanted) {
    const file = byName.get(name.replace(/-/g, "_"));
    // Built into this kernel (no module): nothing to load.
    if (file) visit(file);
  }
  return order;
}

function moduleName(file: string): string {
  return path
    .basename(file)
    .replace(/\.ko(\.[a-z]+)?$/, "")
    .replace(/-/g, "_");
}

/**
 * The initramfs for `tools.kernel`, built once into `cacheDir` (named by a hash of
 * everything in it) and reused: busybox, the virtio modules, /init.
 */
export async function buildInitramfs(tools: VmTools, cacheDir: string): Promise<string> {
  const files = await moduleOrder(tools.kernel.modulesDir);
  const compressed = files.find((f) => !f.endsWith(".ko"));
  if (compressed) {
    throw new Error(
      `${tools.kernel.modulesDir}/${compressed} is compressed; busybox insmod loads only plain .ko files`,
    );
  }
  const busyboxStat = await stat(tools.busybox);
  const key = createHash("sha256")
    .update(INIT_SCRIPT)
    .update(`${tools.kernel.version}\n${files.join("\n")}\n${tools.busybox}:${busyboxStat.size}:${busyboxStat.mtimeMs}`)
    .digest("hex")
    .slice(0, 16);
  const target = path.join(cacheDir, `initramfs-${key}.cpio`);
  if (
    await stat(target).then(
      () => true,
      () => false,
    )
  )
    return target;

  const entries: CpioEntry[] = [
    { type: "dir", name: "bin" },
    { type: "file", name: "bin/busybox", data: await readFile(tools.busybox), mode: 0o755 },
    { type: "symlink", name: "bin/sh", target: "busybox" },
    { type: "dir", name: "modules" },
    { type: "file", name: "init", data: Buffer.from(INIT_SCRIPT), mode: 0o755 },
  ];
  const names: string[] = [];
  for (const file of files) {
    const name = moduleName(file);
    names.push(name);
    entries.push({
      type: "file",
      name: `modules/${name}.ko`,
      data: await readFile(path.join(tools.kernel.modulesDir, file)),
    });
  }
  entries.push({ type: "file", name: "modules/order", data: Buffer.from(`${names.join("\n")}\n`) });
  await mkdir(cacheDir, { recursive: true });
  const temp = `${target}.${process.pid}.tmp`;
  await writeFile(temp, cpioArchive(entries));
  await rename(temp, target);
  return target;
}
