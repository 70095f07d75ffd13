import type { MessageInitShape } from "@bufbuild/protobuf";
import { AddressFamily, type ListeningPortSchema, type PortEventSchema, Ports } from "@tether/protocol/ports";
import type { AgentContext } from "../context.js";
import type { AgentService } from "../rpc/service.js";
import type { ListeningPort, PortChange, PortWatcher } from "./port-watcher.js";

type ListeningPortInit = MessageInitShape<typeof ListeningPortSchema>;
type PortEventInit = MessageInitShape<typeof PortEventSchema>;

/** `tether.v1.Ports`: the sandbox's listening TCP sockets, listed or watched. */
export function createPortsService(ctx: AgentContext, watcher: PortWatcher): AgentService {
  return {
    register(router) {
      router.service(Ports, {
        async list() {
          return { ports: (await watcher.list()).map(toMessage) };
        },

        async *watch(_req, context) {
          const queue = new ChangeQueue();
          const { snapshot, close } = await watcher.subscribe((changes) => queue.push(changes));
          try {
            yield { event: { case: "snapshot", value: { ports: snapshot.map(toMessage) } } } satisfies PortEventInit;
            for (;;) {
              const changes = await queue.next(context.signal);
              if (!changes) return;
              for (const change of changes) yield toEvent(change);
            }
          } finally {
            close();
            ctx.log.debug("port watch ended");
          }
        },
      });
    },

    async close() {
      watcher.close();
    },
  };
}

/** Changes waiting for a Watch stream that is slower than the polls (they are small). */
class ChangeQueue {
  private readonly pending: PortChange[][] = [];
  private wake: (() => void) | undefined;

  push(changes: PortChange[]): void {
    this.pending.push(changes);
    this.wake?.();
  }

  /** The next batch; undefined once `signal` aborts. */
  async next(signal: AbortSignal): Promise<PortChange[] | undefined> {
    while (this.pending.length === 0) {
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
    return this.pending.shift();
  }
}

function toEvent(change: PortChange): PortEventInit {
  return change.type === "opened"
    ? { event: { case: "opened", value: toMessage(change.port) } }
    : { event: { case: "closed", value: toMessage(change.port) } };
}

function toMessage(port: ListeningPort): ListeningPortInit {
  return {
    family: port.family === "ipv4" ? AddressFamily.IPV4 : AddressFamily.IPV6,
    address: port.address,
    port: port.port,
    inode: BigInt(port.inode),
    uid: port.uid,
    pid: port.pid,
    command: port.command ?? "",
    args: port.args ?? [],
    loopback: port.loopback,
    proxyFor: port.proxyFor,
  };
}
