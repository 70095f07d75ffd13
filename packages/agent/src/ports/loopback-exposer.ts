import net from "node:net";
import os from "node:os";
import type { Logger } from "../logger.js";
import type { ListeningPort, PortWatcher } from "./port-watcher.js";
import type { Family, ListeningSocket } from "./proc-net.js";

/** How often the sandbox's addresses are re-read (an interface may come up after the agent). */
const INTERFACE_CHECK_MS = 2000;

/** The sandbox's own non-loopback addresses, by family. */
export type InterfaceAddresses = Record<Family, string[]>;

/** One wanted proxy: listen on address:port, forward to the loopback listener. */
interface ProxyPlan {
  family: Family;
  address: string;
  port: number;
  targetHost: string;
  targetPort: number;
}

interface Proxy extends ProxyPlan {
  server: net.Server;
}

/**
 * Re-exposes services that listen on loopback only (127.0.0.1, ::1) on the sandbox's
 * other addresses, so the host can reach them through the sandbox's network: for each
 * such listener, a TCP proxy on every non-loopback address of the same family, same
 * port, piping each connection to the loopback listener. A proxy goes when its listener
 * does.
 *
 * It must never fight real listeners: it binds specific addresses (never 0.0.0.0 or ::),
 * skips an address:port a real socket already covers (the same address, the family's
 * wildcard, or its v4-mapped form), treats EADDRINUSE as "someone else has it", and
 * never proxies the agent's own sockets (its proxies and its own listeners, known by
 * the agent's pid). So 127.0.0.1:P and [::1]:P held by two different services give two
 * proxies, one per family, that do not collide.
 */
export class LoopbackExposer {
  private listeners = new Map<number, ListeningPort>();
  private readonly proxies = new Map<string, Proxy>();
  private readonly connections = new Set<net.Socket>();
  private addresses: InterfaceAddresses = { ipv4: [], ipv6: [] };
  private unsubscribe: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private rerun = false;
  private closed = false;

  constructor(
    private readonly watcher: PortWatcher,
    private readonly log: Logger,
    private readonly readAddresses: () => InterfaceAddresses = interfaceAddresses,
  ) {
    watcher.setProxyLookup((socket) => this.proxyFor(socket));
  }

  /** Starts following the listeners; resolves once the first proxies are bound. */
  async start(): Promise<void> {
    const { snapshot, close } = await this.watcher.subscribe((changes) => {
      for (const change of changes) {
        if (change.type === "opened") this.listeners.set(change.port.inode, change.port);
        else this.listeners.delete(change.port.inode);
      }
      void this.reconcile();
    });
    this.unsubscribe = close;
    for (const port of snapshot) this.listeners.set(port.inode, port);
    this.addresses = this.readAddresses();
    this.timer = setInterval(() => {
      const addresses = this.readAddresses();
      if (JSON.stringify(addresses) === JSON.stringify(this.addresses)) return;
      this.addresses = addresses;
      void this.reconcile();
    }, INTERFACE_CHECK_MS);
    this.timer.unref();
    await this.reconcile();
  }

  /** Resolves once the proxies match the listeners as last seen. */
  settled(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  /** Closes every proxy and the connections through them. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe?.();
    await this.running;
    const servers = [...this.proxies.values()].map((p) => p.server);
    this.proxies.clear();
    for (const socket of this.connections) socket.destroy();
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }

  /** "127.0.0.1:8080" / "[::1]:8080" when `socket` is one of our proxies. */
  private proxyFor(socket: ListeningSocket): string | undefined {
    const proxy = this.proxies.get(proxyKey(socket.address, socket.port));
    if (!proxy) return undefined;
    return proxy.family === "ipv6"
      ? `[${proxy.targetHost}]:${proxy.targetPort}`
      : `${proxy.targetHost}:${proxy.targetPort}`;
  }

  /** One reconcile at a time; changes during one trigger another after it. */
  private reconcile(): Promise<void> {
    if (this.running) {
      this.rerun = true;
      return this.running;
    }
    const run = async () => {
      do {
        this.rerun = false;
        await this.apply(this.plan());
      } while (this.rerun && !this.closed);
    };
    this.running = run()
      .catch((err: unknown) => this.log.warn({ err }, "re-exposing loopback listeners failed"))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** The proxies the current listeners call for. */
  private plan(): Map<string, ProxyPlan> {
    const real = [...this.listeners.values()].filter((l) => l.pid !== process.pid);
    const wanted = new Map<string, ProxyPlan>();
    for (const listener of real) {
      if (!listener.loopback) continue;
      // A v6 socket on ::ffff:127.0.0.1 serves IPv4 clients.
      const mapped = listener.family === "ipv6" && listener.address.startsWith("::ffff:");
      const family: Family = mapped ? "ipv4" : listener.family;
      const targetHost = mapped ? listener.address.slice("::ffff:".length) : listener.address;
      for (const address of this.addresses[family]) {
        const key = proxyKey(address, listener.port);
        if (wanted.has(key) || covered(real, family, address, listener.port)) continue;
        wanted.set(key, { family, address, port: listener.port, targetHost, targetPort: listener.port });
      }
    }
    return wanted;
  }

  private async apply(wanted: Map<string, ProxyPlan>): Promise<void> {
    if (this.closed) return;
    const closing: Promise<unknown>[] = [];
    for (const [key, proxy] of this.proxies) {
      const plan = wanted.get(key);
      if (plan && plan.targetHost === proxy.targetHost) continue;
      this.proxies.delete(key);
      this.log.info({ address: proxy.address, port: proxy.port }, "loopback listener gone: proxy closed");
      closing.push(new Promise((resolve) => proxy.server.close(resolve)));
    }
    await Promise.all(closing);
    const opening: Promise<void>[] = [];
    for (const [key, plan] of wanted) if (!this.proxies.has(key)) opening.push(this.open(key, plan));
    await Promise.all(opening);
  }

  private async open(key: string, plan: ProxyPlan): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true }, (client) => this.forward(client, plan));
    const proxy: Proxy = { ...plan, server };
    // Registered before it listens, so the scan that sees the socket knows it is ours.
    this.proxies.set(key, proxy);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: plan.address, port: plan.port, exclusive: true }, () => {
          server.off("error", reject);
          resolve();
        });
      });
      server.on("error", (err) => this.log.warn({ err, address: plan.address, port: plan.port }, "proxy failed"));
      this.log.info(
        { address: plan.address, port: plan.port, target: `${plan.targetHost}:${plan.targetPort}` },
        "loopback listener re-exposed",
      );
    } catch (err) {
      if (this.proxies.get(key) === proxy) this.proxies.delete(key);
      const code = (err as NodeJS.ErrnoException).code;
      // Someone else holds the address (a dual-stack [::] listener, a race) or it vanished:
      // leave it; the next change tries again.
      const level = code === "EADDRINUSE" || code === "EADDRNOTAVAIL" ? "debug" : "warn";
      this.log[level]({ err, address: plan.address, port: plan.port }, "cannot re-expose loopback listener");
    }
  }

  /** Pipes one connection to the loopback listener, both ways, half-closes included. */
  private forward(client: net.Socket, plan: ProxyPlan): void {
    const upstream = net.connect({ host: plan.targetHost, port: plan.targetPort, allowHalfOpen: true });
    this.connections.add(client);
    this.connections.add(upstream);
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", fail).once("close", () => this.connections.delete(client));
    upstream.on("error", fail).once("close", () => this.connections.delete(upstream));
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

function proxyKey(address: string, port: number): string {
  return `${address}|${port}`;
}

/** Whether a real listener already serves address:port (so a proxy there would collide). */
function covered(real: ListeningPort[], family: Family, address: string, port: number): boolean {
  const wildcard = family === "ipv4" ? "0.0.0.0" : "::";
  return real.some((l) => {
    if (l.port !== port || l.loopback) return false;
    if (l.family === family) return l.address === address || l.address === wildcard;
    return family === "ipv4" && (l.address === `::ffff:${address}` || l.address === "::ffff:0.0.0.0");
  });
}

/** Non-loopback addresses from getifaddrs; IPv6 link-local ones are left out (they need a scope). */
export function interfaceAddresses(): InterfaceAddresses {
  const out: InterfaceAddresses = { ipv4: [], ipv6: [] };
  for (const entries of Object.values(os.networkInterfaces())) {
    for (const entry of entries ?? []) {
      if (entry.internal) continue;
      if (entry.family === "IPv4") out.ipv4.push(entry.address);
      else if (!entry.address.toLowerCase().startsWith("fe80:")) out.ipv6.push(entry.address);
    }
  }
  for (const list of Object.values(out)) list.sort();
  return out;
}
