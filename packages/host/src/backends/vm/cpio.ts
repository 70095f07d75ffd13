/**
 * Writes cpio archives in the "newc" format the kernel unpacks as an initramfs: a
 * 110-byte ASCII header per entry, the NUL-terminated name and the data, each padded to
 * 4 bytes, and a TRAILER!!! entry at the end. Only what an initramfs needs: directories,
 * regular files and symlinks, owned by root.
 */

export type CpioEntry =
  | { type: "dir"; name: string; mode?: number }
  | { type: "file"; name: string; data: Buffer; mode?: number }
  | { type: "symlink"; name: string; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function header(ino: number, mode: number, size: number, nameSize: number): Buffer {
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  const fields = [ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, nameSize, 0];
  return Buffer.from(`070701${fields.map(hex).join("")}`, "ascii");
}

/** The archive of `entries`, in order (a file's directory must come before it). */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const add = (name: string, mode: number, data: Buffer) => {
    const nameBytes = Buffer.from(`${name}\0`);
    const head = header(ino++, mode, data.length, nameBytes.length);
    parts.push(head, nameBytes, pad4(head.length + nameBytes.length), data, pad4(data.length));
  };
  for (const entry of entries) {
    const name = entry.name.replace(/^\/+/, "");
    if (entry.type === "dir") add(name, S_IFDIR | (entry.mode ?? 0o755), Buffer.alloc(0));
    else if (entry.type === "file") add(name, S_IFREG | (entry.mode ?? 0o644), entry.data);
    else add(name, S_IFLNK | 0o777, Buffer.from(entry.target));
  }
  add("TRAILER!!!", 0, Buffer.alloc(0));
  return Buffer.concat(parts);
}
