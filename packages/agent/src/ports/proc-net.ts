import { readFile } from "node:fs/promises";

export type Family = "ipv4" | "ipv6";

/** A listening TCP socket as /proc/net/tcp or /proc/net/tcp6 shows it. */
export interface ListeningSocket {
  family: Family;
  /** Text form: "127.0.0.1", "::", "::ffff:127.0.0.1". */
  address: string;
  port: number;
  inode: number;
  uid: number;
  /** Bound to a loopback address only (127.0.0.0/8, ::1, ::ffff:127.x.x.x). */
  loopback: boolean;
}

/** The kernel's TCP state number for LISTEN, as /proc prints it. */
const TCP_LISTEN = "0A";

const TABLES: [Family, string][] = [
  ["ipv4", "/proc/net/tcp"],
  ["ipv6", "/proc/net/tcp6"],
];

/**
 * Every listening TCP socket of this network namespace. A table that is missing (no IPv6
 * in the kernel, or a /proc that lacks it, as under some gVisor setups) counts as empty.
 */
export async function readListeningSockets(): Promise<ListeningSocket[]> {
  const tables = await Promise.all(
    TABLES.map(async ([family, file]) => {
      const text = await readFile(file, "latin1").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return "";
        throw err;
      });
      return parseProcNetTcp(text, family);
    }),
  );
  return tables.flat();
}

/** Parses one /proc/net/tcp{,6} table, keeping the sockets in state LISTEN. */
export function parseProcNetTcp(text: string, family: Family): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  const seen = new Set<number>();
  for (const line of text.split("\n")) {
    // "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode ..."
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[3] !== TCP_LISTEN) continue;
    const [addressHex, portHex] = fields[1].split(":");
    const inode = Number(fields[9]);
    if (!portHex || !Number.isSafeInteger(inode) || seen.has(inode)) continue;
    seen.add(inode);
    const bytes = family === "ipv4" ? ipv4Bytes(addressHex) : ipv6Bytes(addressHex);
    out.push({
      family,
      address: family === "ipv4" ? bytes.join(".") : formatIpv6(bytes),
      port: Number.parseInt(portHex, 16),
      inode,
      uid: Number(fields[7]),
      loopback: isLoopback(family, bytes),
    });
  }
  return out;
}

/** /proc prints each 32-bit word of an address as the host-order integer (little-endian here). */
function wordBytes(hex: string): number[] {
  const word = Number.parseInt(hex, 16);
  return [word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, word >>> 24];
}

function ipv4Bytes(hex: string): number[] {
  return wordBytes(hex);
}

function ipv6Bytes(hex: string): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < 32; i += 8) bytes.push(...wordBytes(hex.slice(i, i + 8)));
  return bytes;
}

function isV4Mapped(bytes: number[]): boolean {
  return bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

function isLoopback(family: Family, bytes: number[]): boolean {
  if (family === "ipv4") return bytes[0] === 127;
  if (isV4Mapped(bytes)) return bytes[12] === 127;
  return bytes.slice(0, 15).every((b) => b === 0) && bytes[15] === 1;
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups as "::", v4-mapped dotted. */
export function formatIpv6(bytes: number[]): string {
  if (isV4Mapped(bytes)) return `::ffff:${bytes.slice(12).join(".")}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLength).join(":");
  return `${head}::${tail}`;
}
