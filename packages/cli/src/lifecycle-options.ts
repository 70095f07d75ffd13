import { BACKEND_KINDS, type BackendKind, type CreateOptions, type SandboxInfo } from "@tether/host";
import { type Command, InvalidArgumentError, Option } from "commander";

/** The lifetime flags `create` and `run` share, as commander hands them over. */
export interface LifecycleFlags {
  backend?: BackendKind;
  timeout?: number;
  idleTimeout?: number;
  onExpiry?: "stop" | "remove";
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90s", "30m", "2h", "7d", "500ms" (a bare number is seconds) -> milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`"${text}" is not a duration like 90s, 30m, 2h or 7d`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? "s"]);
}

function positiveDuration(text: string): number {
  const ms = parseDuration(text);
  if (ms <= 0) throw new InvalidArgumentError(`"${text}" must be longer than zero`);
  return ms;
}

/** Adds --backend, --timeout, --idle-timeout and --on-expiry. */
export function addLifecycleOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        "--backend <kind>",
        "docker (the default with --image), vm (a QEMU microVM from --image), bwrap or local (without --image: bwrap where it works, else local)",
      ).choices(BACKEND_KINDS),
    )
    .option(
      "--timeout <duration>",
      "stop (or remove) the sandbox this long after it starts, e.g. 30m, 2h",
      positiveDuration,
    )
    .option("--idle-timeout <duration>", "stop (or remove) it after this long without any activity", positiveDuration)
    .addOption(
      new Option("--on-expiry <action>", "what a timeout does: stop (default) or remove").choices(["stop", "remove"]),
    );
}

/** The Sandboxes.create options the lifetime flags ask for. */
export function lifecycleOptionsFrom(flags: LifecycleFlags): Partial<CreateOptions> {
  const options: Partial<CreateOptions> = {};
  if (flags.backend !== undefined) options.backend = flags.backend;
  if (flags.timeout !== undefined) options.timeoutMs = flags.timeout;
  if (flags.idleTimeout !== undefined) options.idleTimeoutMs = flags.idleTimeout;
  if (flags.onExpiry !== undefined) options.onExpiry = flags.onExpiry;
  return options;
}

/** The backend as `ls` shows it: "local (no isolation)" says plainly what local is. */
export function backendLabel(info: Pick<SandboxInfo, "backend" | "isolation">): string {
  return info.isolation === "none" ? `${info.backend} (no isolation)` : info.backend;
}

/** Says on stderr, always, when a sandbox has no isolation at all. */
export function warnIfUnisolated(info: Pick<SandboxInfo, "id" | "backend" | "isolation">): void {
  if (info.isolation !== "none") return;
  process.stderr.write(
    `tether: warning: sandbox ${info.id} uses backend ${info.backend}: NO isolation, its commands run as this user on this machine\n`,
  );
}

/**
 * Says on stderr, always, that a vm sandbox's --network bridge is QEMU's user-mode NAT,
 * through which the guest also reaches this machine's loopback (a container's bridge does
 * not, nor does a vm's TAP, which hosts that allow it get).
 */
export function warnIfLoopbackReachable(
  info: Pick<SandboxInfo, "id" | "backend" | "vmNetwork">,
  network: string | undefined,
): void {
  if (info.backend !== "vm" || network !== "bridge" || info.vmNetwork === "tap") return;
  process.stderr.write(
    `tether: warning: sandbox ${info.id} (vm, network bridge) uses QEMU's user-mode NAT: it can also connect to services listening on this machine's loopback (at 10.0.2.2)\n`,
  );
}
