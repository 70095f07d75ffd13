import type { Logger } from "../logger.js";
import { type ListeningSocket, readListeningSockets } from "./proc-net.js";
import { type SocketOwner, SocketOwners } from "./socket-owners.js";

/** A listening socket with the process that holds it, where /proc shows one. */
export interface ListeningPort extends ListeningSocket, Partial<SocketOwner> {
  /** On the agent's own proxy sockets: the loopback "address:port" they forward to. */
  proxyFor?: string;
}

export type PortChange = { type: "opened"; port: ListeningPort } | { type: "closed"; port: ListeningPort };

/** How often /proc is polled while anyone watches: events arrive within about this long. */
export const DEFAULT_SCAN_INTERVAL_MS = 250;

/** Tells the watcher which of the agent's own sockets are proxies, and for what. */
export type ProxyLookup = (socket: ListeningSocket) => string | undefined;

/**
 * Polls the listening sockets while anyone subscribes, keeps the current set (keyed by
 * inode) and reports what opened and closed between two polls. One per agent: every
 * Watch stream and the loopback exposer share its polls.
 */
export class PortWatcher {
  private readonly owners = new SocketOwners();
  private current = new Map<number, ListeningPort>();
  private readonly subscribers = new Set<(changes: PortChange[]) => void>();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private proxyLookup: ProxyLookup = () => undefined;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = DEFAULT_SCAN_INTERVAL_MS,
  ) {}

  /** Lets the loopback exposer mark its proxy sockets. */
  setProxyLookup(lookup: ProxyLookup): void {
    this.proxyLookup = lookup;
  }

  /** The listeners now (a fresh scan, so a socket opened a moment ago is in it). */
  async list(): Promise<ListeningPort[]> {
    await this.scan();
    return [...this.current.values()];
  }

  /**
   * Calls `listener` with every batch of changes from now on, and returns the listeners
   * at the moment of subscribing (a fresh scan): the snapshot the changes apply to.
   */
  async subscribe(listener: (changes: PortChange[]) => void): Promise<{ snapshot: ListeningPort[]; close(): void }> {
    // Changes this scan finds go to the other subscribers; this one gets them in its
    // snapshot. Nothing can change the set between the scan's end and the lines below.
    await this.scan();
    this.subscribers.add(listener);
    this.startPolling();
    const close = () => {
      this.subscribers.delete(listener);
      if (this.subscribers.size === 0) this.stopPolling();
    };
    return { snapshot: [...this.current.values()], close };
  }

  /** Stops polling; subscribers hear nothing more. */
  close(): void {
    this.subscribers.clear();
    this.stopPolling();
  }

  private startPolling(): void {
    if (this.timer) return;
    const tick = () => {
      this.scan()
        .catch((err: unknown) => this.log.warn({ err }, "scanning listening ports failed"))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  private stopPolling(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One poll at a time; a caller arriving mid-poll waits for a poll that starts after it. */
  private scan(): Promise<void> {
    const previous = this.scanning ?? Promise.resolve();
    const next = previous.then(
      () => this.scanOnce(),
      () => this.scanOnce(),
    );
    this.scanning = next;
    next.finally(() => {
      if (this.scanning === next) this.scanning = undefined;
    });
    return next;
  }

  private async scanOnce(): Promise<void> {
    const sockets = await readListeningSockets();
    const live = new Set(sockets.map((s) => s.inode));
    const fresh = sockets.filter((s) => !this.current.has(s.inode));
    const owners = fresh.length > 0 ? await this.owners.resolve(fresh.map((s) => s.inode)) : new Map();
    const changes: PortChange[] = [];
    const next = new Map<number, ListeningPort>();
    for (const socket of sockets) {
      const known = this.current.get(socket.inode);
      if (known) {
        next.set(socket.inode, known);
        continue;
      }
      const port: ListeningPort = { ...socket, ...owners.get(socket.inode) };
      if (port.pid === process.pid) port.proxyFor = this.proxyLookup(socket);
      next.set(socket.inode, port);
      changes.push({ type: "opened", port });
    }
    for (const [inode, port] of this.current) if (!live.has(inode)) changes.push({ type: "closed", port });
    this.current = next;
    this.owners.retain(live);
    if (changes.length === 0) return;
    for (const subscriber of this.subscribers) subscriber(changes);
  }
}
