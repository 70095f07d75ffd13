import type { ListeningPort, PortEvent } from "@tether/sdk";
import { Command } from "commander";
import { formatTable } from "../table.js";
import { connectTarget, withTargetOptions } from "../target.js";

interface PortsFlags {
  watch?: boolean;
  json?: boolean;
}

/** `tether ports ID [--watch] [--json]`: the sandbox's listening TCP ports. */
export function portsCommand(): Command {
  return withTargetOptions(
    new Command("ports")
      .summary("list a sandbox's listening TCP ports")
      .description(
        "Lists the TCP ports listening inside a sandbox: address, port, and the process holding each where the agent can see it. --watch prints each port that opens (+) or closes (-) until Ctrl-C. With --agent or --socket instead of an id, asks a tetherd reached directly.",
      )
      .argument("[id]", "the sandbox id or name")
      .option("-w, --watch", "follow: print ports as they open and close")
      .option("--json", "print JSON (with --watch: one event per line)"),
  ).action(async function (this: Command, id: string | undefined, flags: PortsFlags) {
    const agent = await connectTarget(this, id);
    try {
      if (!flags.watch) {
        const ports = sortPorts(await agent.ports.list());
        process.stdout.write(flags.json ? `${JSON.stringify(ports, null, 2)}\n` : table(ports));
        return;
      }
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once("SIGINT", stop).once("SIGTERM", stop);
      for await (const event of agent.ports.watch({ signal: abort.signal })) {
        process.stdout.write(flags.json ? `${JSON.stringify(event)}\n` : eventText(event));
      }
    } finally {
      agent.close();
    }
  });
}

function sortPorts(ports: ListeningPort[]): ListeningPort[] {
  return [...ports].sort(
    (a, b) => a.port - b.port || a.family.localeCompare(b.family) || a.address.localeCompare(b.address),
  );
}

const HEADER = ["PROTO", "ADDRESS", "PORT", "PID", "COMMAND"];

function row(p: ListeningPort): string[] {
  return [
    p.family === "ipv6" ? "tcp6" : "tcp",
    p.address,
    String(p.port),
    p.pid === undefined ? "-" : String(p.pid),
    describe(p),
  ];
}

/** The process, as ps would show it; the agent's proxies say what they forward to. */
function describe(p: ListeningPort): string {
  const command = p.args.length > 0 ? p.args.join(" ") : (p.command ?? "-");
  return p.proxyFor ? `tetherd (proxy for ${p.proxyFor})` : command;
}

function table(ports: ListeningPort[]): string {
  return `${formatTable([HEADER, ...ports.map(row)], 2)}\n`;
}

function eventText(event: PortEvent): string {
  if (event.type === "snapshot") return table(sortPorts(event.ports));
  const [proto, address, port, pid, command] = row(event.port);
  const where = proto === "tcp6" ? `[${address}]:${port}` : `${address}:${port}`;
  return `${event.type === "opened" ? "+" : "-"} ${proto} ${where} pid ${pid} ${command}\n`;
}
