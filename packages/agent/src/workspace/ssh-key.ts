import { generateKeyPairSync } from "node:crypto";
import { constants } from "node:fs";
import { chown, lstat, mkdir, open, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type SshPk from "sshpk";
import type { UnixUser } from "../auth/users.js";
import type { InitLog } from "./log.js";

/** sshpk (with its crypto dependencies, a few hundred KB) is loaded on first use: most agents never make a key. */
let sshpkModule: Promise<typeof SshPk> | undefined;
function loadSshpk(): Promise<typeof SshPk> {
  sshpkModule ??= import("sshpk").then((m) => m.default);
  return sshpkModule;
}

/** The key's outcome: its public half (authorized_keys format) and whether we made it. */
export interface SshKeyResult {
  publicKey: string;
  created: boolean;
}

/**
 * Makes ~/.ssh/id_ed25519 (0600) and its .pub (0644) in `user`'s home when missing, in
 * Node so images without ssh-keygen get one too. The key comes from Node's crypto;
 * sshpk writes OpenSSH's private key format ("openssh-key-v1", what ssh-keygen writes),
 * which Node cannot. Files are created with O_EXCL|O_NOFOLLOW and handed to the user, so
 * an agent running as root never follows a link the user planted.
 */
export async function ensureSshKey(user: UnixUser, comment: string, log: InitLog): Promise<SshKeyResult> {
  const dir = path.join(user.home, ".ssh");
  const keyPath = path.join(dir, "id_ed25519");
  const pubPath = `${keyPath}.pub`;
  log.step(`ssh key ${keyPath}`);
  const dirCreated = await ensurePrivateDir(dir, user);
  if (dirCreated) log.line(`created ${dir} (mode 0700)`);

  const existing = await lstat(keyPath).catch(() => undefined);
  if (existing) {
    if (!existing.isFile()) throw precondition(`${keyPath} exists and is not a regular file`);
    const pub = await readFile(pubPath, "utf8").catch(() => undefined);
    if (pub?.trim()) {
      log.line(`${keyPath} already present`);
      return { publicKey: pub.trim(), created: dirCreated };
    }
    // A private key without its .pub: derive the public half again.
    const sshpk = await loadSshpk();
    const key = sshpk.parsePrivateKey(await readFile(keyPath), "auto", { filename: keyPath });
    const publicKey = key.toPublic().toString("ssh").trim();
    await writeNew(pubPath, `${publicKey}\n`, 0o644, user);
    log.line(`${keyPath} already present; wrote the missing ${pubPath}`);
    return { publicKey, created: true };
  }

  const { privateKey } = generateKeyPairSync("ed25519");
  const sshpk = await loadSshpk();
  const key = sshpk.parsePrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }), "pkcs8");
  key.comment = comment;
  const publicKey = key.toPublic().toString("ssh").trim();
  await writeNew(keyPath, key.toString("openssh"), 0o600, user);
  await writeNew(pubPath, `${publicKey}\n`, 0o644, user);
  log.line(`created ${keyPath} (ed25519, mode 0600) and ${pubPath}`);
  log.line(`${key.fingerprint("sha256").toString()} ${comment}`);
  return { publicKey, created: true };
}

/** ssh-keygen's default comment: user@hostname. */
export function defaultKeyComment(user: UnixUser): string {
  return `${user.name}@${os.hostname()}`;
}

/** Creates `dir` with mode 0700 for `user`; refuses a link or a directory someone else owns. */
async function ensurePrivateDir(dir: string, user: UnixUser): Promise<boolean> {
  const home = await lstat(user.home).catch(() => undefined);
  if (!home?.isDirectory()) throw precondition(`the home directory of ${user.name}, ${user.home}, does not exist`);
  let created = false;
  try {
    await mkdir(dir, { mode: 0o700 });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const info = await lstat(dir);
  if (!info.isDirectory()) throw precondition(`${dir} exists and is not a directory`);
  if (created && needsChown(info.uid, user)) {
    await chown(dir, user.uid, user.gid);
  } else if (info.uid !== user.uid) {
    throw precondition(`${dir} belongs to uid ${info.uid}, not to ${user.name}`);
  }
  return created;
}

async function writeNew(file: string, data: string, mode: number, user: UnixUser): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const handle = await open(file, flags, mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
    if (needsChown(-1, user)) await handle.chown(user.uid, user.gid);
  } finally {
    await handle.close();
  }
}

/** True when files the agent creates must be handed to `user` (the agent runs as someone else). */
function needsChown(ownerUid: number, user: UnixUser): boolean {
  const self = process.getuid?.() ?? user.uid;
  return self !== user.uid && ownerUid !== user.uid;
}

function precondition(message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition);
}
