import { access, constants } from "node:fs/promises";
import Docker from "dockerode";
import { probeBwrap } from "./bwrap/bwrap-backend.js";
import { detectEngine } from "./docker/engine.js";
import { knownAccelerator } from "./vm/qemu-command.js";
import { TAP_BRIDGE, tapSupport } from "./vm/tap-network.js";
import { VmBackend } from "./vm/vm-backend.js";
import { VmToolsMissingError } from "./vm/vm-tools.js";

/** The backends Tether has. */
export const BACKEND_KINDS = ["docker", "bwrap", "local", "vm"] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

/** How isolated each backend's sandboxes are, in a few words. */
export const ISOLATION: Record<BackendKind, string> = {
  docker: "container",
  bwrap: "namespaces (bubblewrap)",
  local: "none",
  vm: "virtual machine (QEMU)",
};

/** Whether a backend can run sandboxes here, and why (not). */
export interface BackendStatus {
  kind: BackendKind;
  available: boolean;
  /** Why it is not available, or what it is when it is. */
  reason: string;
  isolation: string;
  details?: Record<string, unknown>;
}

/** Docker (or Podman's compatible API): the engine answers, with which runtimes. */
export async function dockerStatus(docker = new Docker()): Promise<BackendStatus> {
  try {
    const engine = await detectEngine(docker);
    return {
      kind: "docker",
      available: true,
      reason: `${engine.kind} ${engine.version} at ${engine.endpoint}; runtimes: ${engine.runtimes.join(", ") || "none listed"}`,
      isolation: ISOLATION.docker,
      details: {
        engine: engine.kind,
        version: engine.version,
        endpoint: engine.endpoint,
        runtimes: engine.runtimes,
        defaultRuntime: engine.defaultRuntime,
        rootless: engine.rootless,
      },
    };
  } catch (err) {
    return { kind: "docker", available: false, reason: (err as Error).message, isolation: ISOLATION.docker };
  }
}

/** bubblewrap: the binary is there and a probe sandbox with every namespace we use exits 0. */
export async function bwrapStatus(binary?: string): Promise<BackendStatus> {
  const probe = await probeBwrap(binary);
  return probe.ok
    ? { kind: "bwrap", available: true, reason: "a probe sandbox ran", isolation: ISOLATION.bwrap }
    : { kind: "bwrap", available: false, reason: probe.reason, isolation: ISOLATION.bwrap };
}

/** local: always there (it needs only node), and never isolated. */
export function localStatus(): BackendStatus {
  return {
    kind: "local",
    available: true,
    reason: "always available: the agent runs as a plain process of this user, with NO isolation",
    isolation: ISOLATION.local,
  };
}

/**
 * vm: QEMU, qemu-img, mke2fs, busybox-static, tini and a kernel with its modules are
 * there (what is missing is named with its Debian package), and which accelerator a
 * sandbox gets: KVM only when a probe boot on it worked (done once per home, cached).
 * Images come from the Docker engine: it must answer too.
 */
export async function vmStatus(options: { home?: string; docker?: Docker } = {}): Promise<BackendStatus> {
  const backend = new VmBackend(options);
  try {
    const tools = await backend.tools();
    // Never a probe boot here: doctor would take 15 s where KVM hangs.
    const accel = await knownAccelerator(backend.cacheDir);
    const speed =
      accel === "kvm"
        ? "KVM"
        : accel === "tcg"
          ? "TCG (no usable KVM: boots take seconds)"
          : "KVM or TCG (/dev/kvm is there: the first vm sandbox probes it)";
    return {
      kind: "vm",
      available: true,
      reason: `${tools.qemu}, kernel ${tools.kernel.version}, ${speed}; agent over user-mode TCP (no vsock); images from the docker engine`,
      isolation: ISOLATION.vm,
      details: {
        qemu: tools.qemu,
        kernel: tools.kernel.image,
        accelerator: accel ?? "unprobed",
        transport: backend.transport(),
        ...(await vmHostFacts()),
      },
    };
  } catch (err) {
    const reason =
      err instanceof VmToolsMissingError
        ? `missing: ${err.missing.map((m) => `${m.what} (${m.install})`).join("; ")}`
        : (err as Error).message;
    return { kind: "vm", available: false, reason, isolation: ISOLATION.vm, details: await vmHostFacts() };
  }
}

/**
 * What this host offers a VM's agent transport and network, against what the vm backend
 * uses: it speaks to its agent over TCP (QEMU user-mode hostfwd on 127.0.0.1), and gives
 * `--network bridge` TAP on Tether's bridge where the host allows it, else QEMU's user-mode NAT.
 */
export async function vmHostFacts(): Promise<{ vsock: string; tap: string }> {
  const vhostVsock = await access("/dev/vhost-vsock", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  const vsock = vhostVsock
    ? "/dev/vhost-vsock is there, but the vm backend does not use it yet"
    : "no /dev/vhost-vsock here (modprobe vhost_vsock)";
  const support = await tapSupport();
  const tap = support.ok
    ? `TAP/bridge networking is available here: --network bridge is a TAP on Tether's bridge ${TAP_BRIDGE} with outbound NAT (iptables chains TETHER-VM-*); the guest reaches neither this machine nor other VMs`
    : `no TAP/bridge networking here (${support.reason}): --network bridge is QEMU's user-mode NAT (outbound connections only, and the guest reaches this machine's loopback services at 10.0.2.2)`;
  return {
    vsock: `${vsock}: its agent is reached over TCP that QEMU forwards from 127.0.0.1, relayed to the sandbox's unix socket`,
    tap: `${tap}; the default, none, reaches nothing`,
  };
}

/** The embedded default (sandboxes without an image): bwrap where it works, else local. */
export async function embeddedBackendKind(): Promise<"bwrap" | "local"> {
  return (await probeBwrap()).ok ? "bwrap" : "local";
}
