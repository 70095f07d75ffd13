import type { BigIntStats } from "node:fs";
import { lstat, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { type EntryInfo, EntryInfoSchema, FileType } from "@tether/protocol/filesystem";
import type { UserDirectory } from "../auth/users.js";
import { fsError } from "./errors.js";
import { readMetadata } from "./metadata.js";

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFBLK = 0o060000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;

/**
 * The EntryInfo of a path, as envd builds it: from lstat, except that a symlink reports
 * the type and permission bits of what it points to and its resolved target (a dangling
 * link keeps type SYMLINK, so clients still see it).
 */
export async function entryInfo(target: string, names: UserDirectory): Promise<EntryInfo> {
  let st: BigIntStats;
  try {
    st = await lstat(target, { bigint: true });
  } catch (err) {
    throw fsError(err, "stat", target);
  }
  return entryFromStats(target, st, names);
}

export async function entryFromStats(target: string, st: BigIntStats, names: UserDirectory): Promise<EntryInfo> {
  const mode = Number(st.mode);
  let type = fileTypeOf(mode);
  let perm = mode & 0o777;
  let symlinkTarget: string | undefined;
  if ((mode & S_IFMT) === S_IFLNK) {
    type = FileType.SYMLINK;
    try {
      symlinkTarget = await realpath(target);
      const resolved = await stat(symlinkTarget);
      type = fileTypeOf(resolved.mode);
      perm = resolved.mode & 0o777;
    } catch {
      // Dangling or looping link: report the link itself.
      symlinkTarget ??= target;
    }
  }
  return create(EntryInfoSchema, {
    name: path.basename(target),
    type,
    path: target,
    size: st.size,
    mode: perm,
    permissions: permissionString(mode),
    owner: names.userName(Number(st.uid)),
    group: names.groupName(Number(st.gid)),
    modifiedTime: timestampOf(st.mtimeNs),
    symlinkTarget,
    metadata: await readMetadata(target),
  });
}

function fileTypeOf(mode: number): FileType {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return FileType.FILE;
    case S_IFDIR:
      return FileType.DIRECTORY;
    case S_IFLNK:
      return FileType.SYMLINK;
    default:
      return FileType.UNSPECIFIED;
  }
}

function timestampOf(ns: bigint): Timestamp {
  return create(TimestampSchema, { seconds: ns / 1_000_000_000n, nanos: Number(ns % 1_000_000_000n) });
}

/**
 * The permission string envd sends: Go's `FileMode.String()`, e.g. `-rw-r--r--`,
 * `drwxr-xr-x`, `Lrwxrwxrwx` for a symlink, `dtrwxrwxrwx` for a sticky directory.
 */
export function permissionString(mode: number): string {
  const format = mode & S_IFMT;
  let kind = "";
  if (format === S_IFDIR) kind += "d";
  if (format === S_IFLNK) kind += "L";
  if (format === S_IFBLK || format === S_IFCHR) kind += "D";
  if (format === S_IFIFO) kind += "p";
  if (format === S_IFSOCK) kind += "S";
  if (mode & 0o4000) kind += "u";
  if (mode & 0o2000) kind += "g";
  if (format === S_IFCHR) kind += "c";
  if (mode & 0o1000) kind += "t";
  let bits = "";
  const letters = "rwxrwxrwx";
  for (let i = 0; i < 9; i++) bits += mode & (1 << (8 - i)) ? letters[i] : "-";
  return (kind || "-") + bits;
}
