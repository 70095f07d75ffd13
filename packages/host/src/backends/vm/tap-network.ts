import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, constants, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TetherHostError } from "../../errors.js";
import { findProgram } from "./vm-tools.js";

/**
 * TAP + bridge networking for vm sandboxes with `--network bridge`, where the host allows
 * it: one Linux bridge of Tether's, one TAP per VM on it as an isolated port (VMs do not
 * reach each other), outbound NAT, and nothing from the bridge into the host itself (the
 * agent is still reached over QEMU's user-mode hostfwd, on a second NIC with restrict=on).
 * Tether's rules are in its own chains, TETHER-VM-*, so they are easy to see and remove.
 */

export const TAP_BRIDGE = "tether0";
/** Locally administered; "tet0" in its last bytes. */
const BRIDGE_MAC = "02:00:74:65:74:30";
const INPUT_CHAIN = "TETHER-VM-INPUT";
const FORWARD_CHAIN = "TETHER-VM-FORWARD";
const NAT_CHAIN = "TETHER-VM-NAT";
/** /16s tried in order for the bridge; the first that no route here overlaps is taken. */
const CANDIDATE_SUBNETS = ["10.213.0.0", "10.214.0.0", "172.30.0.0", "172.31.0.0"];

/** A VM's place on the bridge, kept in its sandbox.json. */
export interface TapAttachment {
  /** The host-side TAP device, ≤ 15 characters. */
  ifname: string;
  mac: string;
  /** `address/prefix`. */
  address: string;
  gateway: string;
}

/** Setting up Tether's bridge, its chains or a VM's TAP failed: what ran, and what it said. */
export class TapNetworkError extends TetherHostError {
  constructor(
    message: string,
    readonly command?: string[],
    readonly stderr?: string,
  ) {
    super(`vm TAP networking: ${message}`);
  }
}

export type TapSupport = { ok: true } | { ok: false; reason: string };

/** Whether this host lets the vm backend build TAP networking; why not when it does not. */
export async function tapSupport(): Promise<TapSupport> {
  if (process.env.TETHER_VM_TAP === "off") return { ok: false, reason: "TETHER_VM_TAP=off" };
  if (!(await hasNetAdmin())) return { ok: false, reason: "not root and no CAP_NET_ADMIN" };
  const tun = await access("/dev/net/tun", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  if (!tun) return { ok: false, reason: "no usable /dev/net/tun" };
  for (const tool of ["ip", "iptables", "bridge"]) {
    if (!(await findProgram(tool))) return { ok: false, reason: `no ${tool} on PATH (iproute2, iptables)` };
  }
  return { ok: true };
}

/** CAP_NET_ADMIN (bit 12) in this process's effective set. */
async function hasNetAdmin(): Promise<boolean> {
  if (process.getuid?.() === 0) return true;
  const status = await readFile("/proc/self/status", "utf8").catch(() => "");
  const match = /^CapEff:\s*([0-9a-f]+)/m.exec(status);
  return match ? (BigInt(`0x${match[1]}`) & (1n << 12n)) !== 0n : false;
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` } },
      (err, out, errOut) => {
        const said = (errOut || err?.message || "").trim();
        if (err) reject(new TapNetworkError(`${file} ${args.join(" ")} failed: ${said}`, [file, ...args], errOut));
        else resolve(out);
      },
    );
  });
}

const succeeds = (file: string, args: string[]) =>
  run(file, args).then(
    () => true,
    () => false,
  );

/** The bridge's own address (`a.b.0.1/16`), once it exists. */
async function bridgeAddress(): Promise<string | undefined> {
  const out = await run("ip", ["-4", "-o", "addr", "show", "dev", TAP_BRIDGE]).catch(() => "");
  return /inet (\d+\.\d+\.\d+\.\d+\/\d+)/.exec(out)?.[1];
}

/** The first candidate /16 that overlaps no IPv4 route here (the default route aside). */
async function freeSubnet(): Promise<string> {
  const routes = (await run("ip", ["-4", "route", "show", "table", "all"]))
    .split("\n")
    .map((line) => /^(?:\S+ )?(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?/.exec(line.replace(/^(local|broadcast) /, "")))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ net: toInt(m[1] as string), bits: Number(m[2] ?? 32) }));
  for (const candidate of CANDIDATE_SUBNETS) {
    const net = toInt(candidate);
    const clash = routes.some(({ net: other, bits }) => {
      const mask = maskOf(Math.min(bits, 16));
      return (net & mask) >>> 0 === (other & mask) >>> 0;
    });
    if (!clash) return candidate;
  }
  throw new TapNetworkError(
    `every subnet Tether tries for its VM bridge (${CANDIDATE_SUBNETS.join(", ")} /16) is in use here`,
  );
}

function toInt(address: string): number {
  return address.split(".").reduce((n, part) => ((n << 8) | Number(part)) >>> 0, 0);
}

function toAddress(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join(".");
}

function maskOf(bits: number): number {
  return bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
}

let settingUp: Promise<string> | undefined;

/**
 * The bridge, its address, forwarding and Tether's chains, made if missing (idempotent);
 * resolves to the bridge's `address/prefix`. In order: the guest may start connections out
 * (NAT), the host may answer them; nothing from the bridge reaches the host itself
 * (INPUT), nor a port Docker publishes here (DNAT'd, then forwarded), nor IPv6 on the bridge;
 * what leaves the bridge must come from its subnet.
 */
export function ensureBridge(): Promise<string> {
  settingUp ??= setUpBridge().finally(() => {
    settingUp = undefined;
  });
  return settingUp;
}

async function setUpBridge(): Promise<string> {
  if (!(await succeeds("ip", ["link", "show", "dev", TAP_BRIDGE]))) {
    // A MAC of its own, always the same: a bridge without one takes its ports' lowest, which
    // changes as TAPs come and go (a restored guest's ARP entry for its gateway would then
    // point nowhere), and so would a bridge made afresh with another.
    await run("ip", ["link", "add", TAP_BRIDGE, "address", BRIDGE_MAC, "type", "bridge"]).catch(async (err) => {
      // Another process made it in between.
      if (!(await succeeds("ip", ["link", "show", "dev", TAP_BRIDGE]))) throw err;
    });
  }
  await writeFile(`/proc/sys/net/ipv6/conf/${TAP_BRIDGE}/disable_ipv6`, "1").catch(() => {});
  let address = await bridgeAddress();
  if (!address) {
    address = `${toAddress(toInt(await freeSubnet()) + 1)}/16`;
    await run("ip", ["addr", "add", address, "dev", TAP_BRIDGE]);
  }
  await run("ip", ["link", "set", TAP_BRIDGE, "up"]);
  await writeFile("/proc/sys/net/ipv4/ip_forward", "1");
  const [ip, bits] = address.split("/") as [string, string];
  const subnet = `${toAddress((toInt(ip) & maskOf(Number(bits))) >>> 0)}/${bits}`;
  const chains: [table: string, chain: string, hook: string, rules: string[][]][] = [
    [
      "filter",
      INPUT_CHAIN,
      "INPUT",
      [
        ["-i", TAP_BRIDGE, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-i", TAP_BRIDGE, "-j", "DROP"],
      ],
    ],
    [
      "filter",
      FORWARD_CHAIN,
      "FORWARD",
      [
        ["-i", TAP_BRIDGE, "-m", "conntrack", "--ctstate", "DNAT", "-j", "DROP"],
        // A guest that takes an address off the subnet would go out un-NATed, as someone else.
        ["-i", TAP_BRIDGE, "!", "-s", subnet, "-j", "DROP"],
        ["-i", TAP_BRIDGE, "!", "-o", TAP_BRIDGE, "-j", "ACCEPT"],
        ["-o", TAP_BRIDGE, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-o", TAP_BRIDGE, "-j", "DROP"],
      ],
    ],
    ["nat", NAT_CHAIN, "POSTROUTING", [["-s", subnet, "!", "-o", TAP_BRIDGE, "-j", "MASQUERADE"]]],
  ];
  for (const [table, chain, hook, rules] of chains) {
    // Rebuilt whole each time: the chain's content is exactly this, whatever was there.
    if (!(await succeeds("iptables", ["-w", "-t", table, "-N", chain]))) {
      await run("iptables", ["-w", "-t", table, "-F", chain]);
    }
    for (const rule of rules) await run("iptables", ["-w", "-t", table, "-A", chain, ...rule]);
    // First in its hook: before Docker's FORWARD chains, whose policy drops what they do not accept.
    if (!(await succeeds("iptables", ["-w", "-t", table, "-C", hook, "-j", chain]))) {
      await run("iptables", ["-w", "-t", table, "-I", hook, "1", "-j", chain]);
    }
  }
  return address;
}

/**
 * Removes Tether's chains and the bridge (tests; an uninstall); false, and nothing done,
 * while a VM's TAP is on the bridge.
 */
export async function removeBridge(): Promise<boolean> {
  const ports = await readdir(`/sys/class/net/${TAP_BRIDGE}/brif`).catch(() => [] as string[]);
  if (ports.length > 0) return false;
  for (const [table, chain, hook] of [
    ["filter", INPUT_CHAIN, "INPUT"],
    ["filter", FORWARD_CHAIN, "FORWARD"],
    ["nat", NAT_CHAIN, "POSTROUTING"],
  ] as const) {
    while (await succeeds("iptables", ["-w", "-t", table, "-D", hook, "-j", chain]));
    await succeeds("iptables", ["-w", "-t", table, "-F", chain]);
    await succeeds("iptables", ["-w", "-t", table, "-X", chain]);
  }
  await succeeds("ip", ["link", "del", TAP_BRIDGE]);
  return true;
}

/** The TAP device's name for a sandbox id (12 hex digits): `tt` and the id. */
export function tapName(id: string): string {
  return `tt${id}`.slice(0, 15);
}

/**
 * Where addresses on the bridge are claimed, a file per address made with O_EXCL: the
 * bridge is the host's, shared by every TETHER_HOME and process, and two creates at once
 * (or two homes) would otherwise give two VMs one address. A claim names its sandbox's
 * directory and lasts as long as the sandbox (released at remove); one left by a home
 * deleted outright stays until reboot (/run is a tmpfs), which costs one address of 65,533.
 */
function claimsDir(): string {
  return process.getuid?.() === 0
    ? "/run/tether-vm-tap"
    : path.join(os.tmpdir(), `tether-vm-tap-${process.getuid?.()}`);
}

function claimFile(address: string): string {
  return path.join(claimsDir(), address.split("/")[0] as string);
}

/** Claims `address` for the sandbox in `sandboxDir`: true when it is now, or already was, its own. */
async function claimAddress(address: string, sandboxDir: string): Promise<boolean> {
  await mkdir(claimsDir(), { recursive: true, mode: 0o700 });
  try {
    await writeFile(claimFile(address), sandboxDir, { flag: "wx", mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return (await readFile(claimFile(address), "utf8").catch(() => "")) === sandboxDir;
  }
}

/** Gives back a sandbox's address (at its removal, or when its create failed). */
export async function releaseAddress(address: string, sandboxDir: string): Promise<void> {
  const holder = await readFile(claimFile(address), "utf8").catch(() => undefined);
  if (holder === sandboxDir) await rm(claimFile(address), { force: true });
}

/**
 * A sandbox's attachment: its address is one of the bridge's /16 picked from its id, the
 * first from there that is not in `taken` and that it can claim; its MAC is locally
 * administered, from its id.
 */
export async function allocateTap(id: string, sandboxDir: string, taken: ReadonlySet<string>): Promise<TapAttachment> {
  const bridge = await ensureBridge();
  const [gateway, bits] = bridge.split("/") as [string, string];
  const size = 2 ** (32 - Number(bits));
  const base = (toInt(gateway) & maskOf(Number(bits))) >>> 0;
  const hash = createHash("sha256").update(id).digest();
  // Hosts 2 .. size-2: not the network, the bridge (.1) or the broadcast address.
  let host = 2 + (hash.readUInt32BE(0) % (size - 3));
  for (let tries = 0; tries < size; tries++) {
    const address = `${toAddress(base + host)}/${bits}`;
    if (!taken.has(address) && (await claimAddress(address, sandboxDir))) {
      const mac = ["02", ...[...hash.subarray(4, 9)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
      return { ifname: tapName(id), mac, address, gateway };
    }
    host = host + 1 > size - 2 ? 2 : host + 1;
  }
  throw new TapNetworkError(`no free address on ${TAP_BRIDGE}`);
}

/**
 * The VM's TAP, made afresh (a stale one removed), on the bridge as an isolated port, up;
 * off the bridge, it is left down (a device for a restored NIC that goes nowhere: up and on
 * no bridge, the host would take the guest's packets as its own, past TETHER-VM-INPUT).
 */
export async function createTap(attachment: TapAttachment, onBridge = true): Promise<void> {
  const name = attachment.ifname;
  await succeeds("ip", ["link", "del", name]);
  await run("ip", ["tuntap", "add", "dev", name, "mode", "tap"]);
  await writeFile(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, "1").catch(() => {});
  if (!onBridge) return;
  try {
    await ensureBridge();
    await run("ip", ["link", "set", name, "master", TAP_BRIDGE]);
    // An isolated port forwards only to non-isolated ones (the bridge itself): not to other VMs.
    await run("bridge", ["link", "set", "dev", name, "isolated", "on"]);
    await run("ip", ["link", "set", name, "up"]);
  } catch (err) {
    await removeTap(name);
    throw err;
  }
}

/** Removes a VM's TAP device; nothing when it is not there. */
export async function removeTap(ifname: string): Promise<void> {
  await succeeds("ip", ["link", "del", ifname]);
}
