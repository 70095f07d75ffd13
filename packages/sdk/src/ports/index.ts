import { type Client, createClient } from "@connectrpc/connect";
import {
  AddressFamily,
  Ports as PortsService,
  type ListeningPort as WireListeningPort,
  type PortEvent as WirePortEvent,
} from "@tether/protocol/ports";
import type { Connection } from "../connection.js";
import { toTetherError } from "../errors.js";
import { serverStream } from "../server-stream.js";

/** A listening TCP socket inside the sandbox. */
export interface ListeningPort {
  family: "ipv4" | "ipv6";
  /** "0.0.0.0", "127.0.0.1", "::", "::1", ... */
  address: string;
  port: number;
  /** Tells two sockets on the same address apart across events. */
  inode: number;
  /** The uid owning the socket. */
  uid: number;
  /** The process holding it, when the agent can see it. */
  pid?: number;
  /** That process's name (/proc/PID/comm). */
  command?: string;
  /** That process's command line. */
  args: string[];
  /** Listens on loopback only: reachable from outside only through a tunnel or the agent's re-exposure. */
  loopback: boolean;
  /** On the agent's own proxies that re-expose a loopback listener: the "address:port" they forward to. */
  proxyFor?: string;
}

/** What `watch` yields: first the listeners at that moment, then each change. */
export type PortEvent =
  | { type: "snapshot"; ports: ListeningPort[] }
  | { type: "opened"; port: ListeningPort }
  | { type: "closed"; port: ListeningPort };

/** The sandbox's listening TCP ports (`agent.ports`). */
export class Ports {
  private readonly client: Client<typeof PortsService>;

  constructor(private readonly connection: Connection) {
    this.client = createClient(PortsService, connection.transport);
  }

  /** The listening sockets now. */
  async list(): Promise<ListeningPort[]> {
    try {
      const { ports } = await this.client.list({});
      return ports.map(fromWire);
    } catch (err) {
      throw toTetherError(err, "list ports", this.connection.address);
    }
  }

  /**
   * Follows the listening sockets: a snapshot first, then every socket that opens or
   * closes (the agent polls a few times a second). Ends when `signal` aborts or the loop
   * breaks.
   */
  async *watch(options: { signal?: AbortSignal } = {}): AsyncGenerator<PortEvent> {
    const events = serverStream(
      this.connection,
      PortsService.method.watch,
      {},
      {
        headers: this.connection.headers(),
        signal: options.signal,
      },
    );
    try {
      for await (const event of events) {
        const converted = fromWireEvent(event);
        if (converted) yield converted;
      }
    } catch (err) {
      if (options.signal?.aborted) return;
      throw toTetherError(err, "watch ports", this.connection.address);
    }
  }
}

function fromWireEvent(event: WirePortEvent): PortEvent | undefined {
  switch (event.event.case) {
    case "snapshot":
      return { type: "snapshot", ports: event.event.value.ports.map(fromWire) };
    case "opened":
      return { type: "opened", port: fromWire(event.event.value) };
    case "closed":
      return { type: "closed", port: fromWire(event.event.value) };
    default:
      return undefined;
  }
}

function fromWire(port: WireListeningPort): ListeningPort {
  const out: ListeningPort = {
    family: port.family === AddressFamily.IPV6 ? "ipv6" : "ipv4",
    address: port.address,
    port: port.port,
    inode: Number(port.inode),
    uid: port.uid,
    args: port.args,
    loopback: port.loopback,
  };
  if (port.pid !== undefined) out.pid = port.pid;
  if (port.command) out.command = port.command;
  if (port.proxyFor !== undefined) out.proxyFor = port.proxyFor;
  return out;
}
