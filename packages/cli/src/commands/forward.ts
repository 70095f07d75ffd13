import net from "node:net";
import type { Agent } from "@tether/sdk";
import { Command, InvalidArgumentError } from "commander";
import { ListenError } from "../errors.js";
import { connectTarget, isDirect, withTargetOptions } from "../target.js";

interface ForwardSpec {
  local: number;
  remote: number;
}

/** Parses `[LOCAL:]REMOTE`; LOCAL 0 or omitted means a free port. */
export function parseForwardSpec(text: string): ForwardSpec {
  const match = /^(?:(\d{1,5}):)?(\d{1,5})$/.exec(text);
  const local = Number(match?.[1] ?? 0);
  const remote = Number(match?.[2]);
  if (!match || local > 65535 || remote < 1 || remote > 65535) {
    throw new InvalidArgumentError(`"${text}" is not [LOCAL:]REMOTE (ports; LOCAL 0 or omitted picks a free one)`);
  }
  return { local, remote };
}

/** `tether forward ID [LOCAL:]REMOTE`: a local port that tunnels each connection to a port in the sandbox. */
export function forwardCommand(): Command {
  return withTargetOptions(
    new Command("forward")
      .summary("forward a local port to a port inside a sandbox")
      .description(
        "Listens on 127.0.0.1:LOCAL (a free port, printed, when LOCAL is 0 or omitted) and carries each connection to REMOTE inside the sandbox through the agent's own connection, so it works with network none. Runs until Ctrl-C. With --agent or --socket, the id is left out.",
      )
      .usage("[options] ID [LOCAL:]REMOTE\n       tether forward --agent URL | --socket PATH [options] [LOCAL:]REMOTE")
      .argument("[id]", "the sandbox id or name")
      .argument("[ports]", "[LOCAL:]REMOTE")
      .option("--host <host>", "connect to this host inside the sandbox instead of 127.0.0.1"),
  ).action(async function (this: Command, first: string | undefined, second: string | undefined) {
    const direct = isDirect(this);
    const [id, specText] = direct ? [second === undefined ? undefined : first, second ?? first] : [first, second];
    if (specText === undefined) this.error("error: missing [LOCAL:]REMOTE, e.g. tether forward ID 8080:80");
    let spec: ForwardSpec;
    try {
      spec = parseForwardSpec(specText as string);
    } catch (err) {
      this.error(`error: ${(err as Error).message}`);
    }
    const host = this.opts<{ host?: string }>().host;
    const agent = await connectTarget(this, id);
    await forward(agent, spec, host, direct ? "the agent" : `sandbox ${id}`);
  });
}

/** Serves until SIGINT/SIGTERM, then closes everything and exits 0. */
async function forward(agent: Agent, spec: ForwardSpec, host: string | undefined, name: string): Promise<void> {
  const connections = new Set<net.Socket>();
  const target = host
    ? host.includes(":")
      ? `[${host}]:${spec.remote}`
      : `${host}:${spec.remote}`
    : `port ${spec.remote}`;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (local) => {
    connections.add(local);
    local.once("close", () => connections.delete(local));
    local.on("error", () => local.destroy());
    agent.tunnel(spec.remote, { host }).then(
      (remote) => {
        if (local.destroyed) {
          remote.destroy();
          return;
        }
        remote.on("error", (err) => {
          process.stderr.write(`tether: ${err.message}\n`);
          local.destroy();
        });
        local.on("error", () => remote.destroy());
        // A client that sent everything and went away: let the tunnel deliver the rest first.
        local.once("close", () => {
          if (remote.writableFinished || !local.readableEnded) remote.destroy();
          else remote.once("finish", () => remote.destroy());
        });
        local.pipe(remote);
        remote.pipe(local);
        local.resume();
      },
      (err: Error) => {
        process.stderr.write(`tether: ${err.message}\n`);
        local.resetAndDestroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(spec.local, "127.0.0.1", () => resolve());
  }).catch((err: NodeJS.ErrnoException) => {
    agent.close();
    throw new ListenError(spec.local, err);
  });
  const { port } = server.address() as net.AddressInfo;
  process.stdout.write(`Forwarding 127.0.0.1:${port} -> ${target} in ${name} (Ctrl-C to stop)\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve).once("SIGTERM", resolve);
  });
  server.close();
  for (const socket of connections) socket.destroy();
  agent.close();
}
