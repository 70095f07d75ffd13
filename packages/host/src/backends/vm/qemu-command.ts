import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { access, constants, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { AGENT_CONTAINER_PORT } from "@tether/bundle";
import { PROBE_MARKER } from "./initramfs.js";
import type { VmTools } from "./vm-tools.js";

/** How QEMU runs guest code: hardware virtualisation, or TCG's translation (slow, always there). */
export type Accelerator = "kvm" | "tcg";

/** Everything one QEMU process of a sandbox is made from. */
export interface QemuPlan {
  tools: VmTools;
  accel: Accelerator;
  initramfs: string;
  memoryBytes: number;
  cpus: number;
  rootOverlay: string;
  bundleDisk: string;
  configDisk: string;
  qmpSocket: string;
  /** The host's 127.0.0.1 port forwarded to the agent's port in the guest. */
  agentPort: number;
  /**
   * Outbound network for the guest through user-mode NAT (which also reaches this machine's
   * loopback); without it the user-mode NIC reaches nothing but its forwarded port.
   */
  outbound: boolean;
  /** A second NIC on this TAP (see tap-network.ts), for outbound network instead of user-mode NAT. */
  tap?: { ifname: string; mac: string };
  /** Restore from this migration stream (`exec:` URI) instead of booting. */
  incoming?: string;
}

/**
 * QEMU's command line. Devices, their order and ids must be the same at boot and at
 * restore: the snapshot is loaded into a machine built from the same line, plus -incoming.
 * The console is the first serial port on QEMU's stdout, which the supervisor logs.
 */
export function qemuArgs(plan: QemuPlan): string[] {
  const netdev = [
    "user",
    "id=net0",
    // restrict=on: the guest reaches neither the host nor the outside; hostfwd still works.
    `restrict=${plan.outbound && !plan.tap ? "off" : "on"}`,
    `hostfwd=tcp:127.0.0.1:${plan.agentPort}-:${AGENT_CONTAINER_PORT}`,
  ].join(",");
  const args = [
    "-M",
    "microvm,rtc=on",
    "-accel",
    plan.accel,
    // TCG: `max` gives node the instruction sets it expects; KVM: the host's.
    "-cpu",
    plan.accel === "kvm" ? "host" : "max",
    "-m",
    `${Math.max(64, Math.floor(plan.memoryBytes / (1 << 20)))}M`,
    "-smp",
    String(plan.cpus),
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    "-no-reboot",
    "-kernel",
    plan.tools.kernel.image,
    "-initrd",
    plan.initramfs,
    "-append",
    kernelCommandLine(plan.accel, "boot"),
    "-chardev",
    "stdio,id=console,signal=off",
    "-serial",
    "chardev:console",
    "-qmp",
    `unix:${plan.qmpSocket},server=on,wait=off`,
    "-drive",
    `id=root,file=${plan.rootOverlay},format=qcow2,if=none`,
    "-device",
    "virtio-blk-device,drive=root",
    "-drive",
    `id=bundle,file=${plan.bundleDisk},format=raw,if=none,readonly=on`,
    "-device",
    "virtio-blk-device,drive=bundle",
    "-drive",
    `id=config,file=${plan.configDisk},format=raw,if=none,readonly=on`,
    "-device",
    "virtio-blk-device,drive=config",
    "-netdev",
    netdev,
    "-device",
    "virtio-net-device,netdev=net0",
    "-device",
    "virtio-rng-device",
  ];
  if (plan.tap) {
    // After the others: the devices before it keep the ids and order they have without it.
    args.push(
      "-netdev",
      `tap,id=net1,ifname=${plan.tap.ifname},script=no,downscript=no`,
      "-device",
      `virtio-net-device,netdev=net1,mac=${plan.tap.mac}`,
    );
  }
  if (plan.incoming) args.push("-incoming", plan.incoming);
  return args;
}

/**
 * The guest kernel's command line. `panic=-1` and QEMU's -no-reboot: when PID 1 ends the
 * guest panics, reboots at once, and QEMU exits. Under TCG, microvm has no reference clock
 * (no PIT calibration that works, no HPET, no PM timer) and the kernel hangs after
 * "Marking TSC unstable": it is told the TSC's rate, which under TCG is the host's, and
 * that the TSC is reliable: else the clocksource watchdog drops it for jiffies, which lose
 * ticks under TCG (the guest's clock ran about 10% slow, seconds behind the host's).
 * `tether.mode=probe`: the init prints PROBE_MARKER and reboots.
 */
export function kernelCommandLine(accel: Accelerator, mode: "boot" | "probe"): string {
  const words = ["console=ttyS0", "quiet", "panic=-1", `tether.mode=${mode}`];
  const khz = accel === "tcg" ? hostTscKhz() : undefined;
  if (khz) words.push(`tsc_early_khz=${khz}`, "tsc=reliable");
  return words.join(" ");
}

/** The host's TSC frequency in kHz, from /proc/cpuinfo's first "cpu MHz". */
export function hostTscKhz(): number | undefined {
  try {
    const match = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    return match ? Math.round(Number(match[1]) * 1000) : undefined;
  } catch {
    return undefined;
  }
}

/** How long a KVM probe boot may take: a working KVM boots in well under a second. */
const KVM_PROBE_DEADLINE_MS = 15_000;

/**
 * Whether QEMU can use KVM here, found by a probe boot with a deadline: /dev/kvm may exist
 * and answer while QEMU cannot run a guest on it (nested virtualisation off, a PVM host:
 * QEMU aborts, or the guest hangs). The answer is cached in `cacheDir` per kernel and QEMU.
 */
export async function detectAccelerator(tools: VmTools, initramfs: string, cacheDir: string): Promise<Accelerator> {
  const settled = await settledAccelerator();
  if (settled) return settled;
  const cacheFile = path.join(cacheDir, "accel.json");
  const key = `${tools.qemu} ${tools.kernel.version} ${path.basename(initramfs)}`;
  const cached = await readProbe(cacheDir);
  if (cached?.key === key) return cached.accel;
  const accel: Accelerator = (await probeBoot(tools, initramfs, "kvm", KVM_PROBE_DEADLINE_MS)) ? "kvm" : "tcg";
  await mkdir(cacheDir, { recursive: true });
  await writeFile(cacheFile, `${JSON.stringify({ key, accel })}\n`);
  return accel;
}

/**
 * The accelerator as far as it is known without booting (for `tether doctor`, which must
 * not take a 15 s probe): the override, TCG without a usable /dev/kvm, else the last
 * probe's answer in `cacheDir`; undefined before the first vm sandbox probed.
 */
export async function knownAccelerator(cacheDir: string): Promise<Accelerator | undefined> {
  return (await settledAccelerator()) ?? (await readProbe(cacheDir))?.accel;
}

/** TETHER_VM_ACCEL when set, TCG when /dev/kvm is not usable; undefined when only a probe can tell. */
async function settledAccelerator(): Promise<Accelerator | undefined> {
  const override = process.env.TETHER_VM_ACCEL;
  if (override === "kvm" || override === "tcg") return override;
  const usable = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  return usable ? undefined : "tcg";
}

function readProbe(cacheDir: string): Promise<{ key: string; accel: Accelerator } | undefined> {
  return readFile(path.join(cacheDir, "accel.json"), "utf8")
    .then((text) => JSON.parse(text) as { key: string; accel: Accelerator })
    .catch(() => undefined);
}

/** Boots the kernel and initramfs with `accel` and no disks; true when the init's marker came within the deadline. */
export function probeBoot(tools: VmTools, initramfs: string, accel: Accelerator, deadlineMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(
      tools.qemu,
      [
        "-M",
        "microvm",
        "-accel",
        accel,
        "-cpu",
        accel === "kvm" ? "host" : "max",
        "-m",
        "128M",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-kernel",
        tools.kernel.image,
        "-initrd",
        initramfs,
        "-append",
        kernelCommandLine(accel, "probe"),
        "-serial",
        "stdio",
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    let output = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), deadlineMs);
    child.stdout.on("data", (data: Buffer) => {
      output += data.toString();
    });
    child.on("error", () => {});
    child.on("close", () => {
      clearTimeout(timer);
      resolve(output.includes(PROBE_MARKER));
    });
  });
}
