import { readdir, readFile, readlink } from "node:fs/promises";

/** The process holding a socket, as /proc shows it. */
export interface SocketOwner {
  pid: number;
  /** /proc/PID/comm: the process's short name. */
  command: string;
  /** /proc/PID/cmdline: its arguments (empty for a kernel thread or a zombie). */
  args: string[];
}

/**
 * Finds which process holds a socket inode by reading the /proc/PID/fd links
 * ("socket:[INODE]"). Walking every process's fds is the expensive part of watching
 * ports, so it runs only for inodes not seen before, and what it learns is cached until
 * the socket goes. Processes of other users are invisible to an agent that is not root:
 * their sockets stay ownerless.
 */
export class SocketOwners {
  private readonly known = new Map<number, SocketOwner | undefined>();

  /** The owner of each inode (undefined when /proc does not show one). */
  async resolve(inodes: Iterable<number>): Promise<Map<number, SocketOwner | undefined>> {
    const wanted = new Set<number>();
    for (const inode of inodes) if (!this.known.has(inode)) wanted.add(inode);
    if (wanted.size > 0) {
      const found = await findOwners(wanted);
      for (const inode of wanted) this.known.set(inode, found.get(inode));
    }
    const out = new Map<number, SocketOwner | undefined>();
    for (const inode of inodes) out.set(inode, this.known.get(inode));
    return out;
  }

  /** Drops what is cached for sockets that are gone. */
  retain(live: Set<number>): void {
    for (const inode of this.known.keys()) if (!live.has(inode)) this.known.delete(inode);
  }
}

/** Walks /proc/PID/fd, newest processes first (a new listener is most likely theirs), until every inode is found. */
async function findOwners(wanted: Set<number>): Promise<Map<number, SocketOwner>> {
  const found = new Map<number, SocketOwner>();
  const pids = (await readdir("/proc"))
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .sort((a, b) => b - a);
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")));
    let owner: SocketOwner | undefined;
    for (const link of links) {
      if (!link.startsWith("socket:[")) continue;
      const inode = Number(link.slice(8, -1));
      if (!wanted.has(inode) || found.has(inode)) continue;
      owner ??= await describeProcess(pid);
      found.set(inode, owner);
    }
    if (found.size === wanted.size) break;
  }
  return found;
}

async function describeProcess(pid: number): Promise<SocketOwner> {
  const [comm, cmdline] = await Promise.all([
    readFile(`/proc/${pid}/comm`, "utf8").catch(() => ""),
    readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => ""),
  ]);
  const args = cmdline.split("\0");
  if (args.at(-1) === "") args.pop();
  return { pid, command: comm.trimEnd(), args };
}
