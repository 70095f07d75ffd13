import { Commands } from "./commands/index.js";
import { Connection, type ConnectionOptions, readAll, responseOf } from "./connection.js";
import { AgentUnavailableError, httpError, toTetherError } from "./errors.js";
import { Files } from "./files/index.js";
import { Ports } from "./ports/index.js";
import { Pty } from "./pty/index.js";
import { openTunnel, type TunnelOptions, type TunnelStream } from "./tunnel/index.js";
import { Workspace } from "./workspace/index.js";

/** A client for one tetherd: commands, pseudo-terminals, files, ports and tunnels over one connection. */
export class Agent {
  readonly commands: Commands;
  readonly pty: Pty;
  readonly files: Files;
  readonly ports: Ports;
  readonly workspace: Workspace;
  readonly connection: Connection;

  /** Creates a client; it connects on the first call. See also `connect()`. */
  constructor(options: ConnectionOptions) {
    this.connection = new Connection(options);
    this.commands = new Commands(this.connection);
    this.pty = new Pty(this.connection, this.commands);
    this.files = new Files(this.connection);
    this.ports = new Ports(this.connection);
    this.workspace = new Workspace(this.connection);
  }

  /** Resolves when the agent answers `GET /health`; throws AgentUnavailableError if not. */
  async health(): Promise<void> {
    const what = "health check";
    try {
      const stream = await this.connection.request("GET", "/health", {});
      const headers = await responseOf(stream);
      const status = Number(headers[":status"]);
      const body = await readAll(stream);
      if (status !== 204 && status !== 200) throw httpError(status, body.toString("utf8"), what);
    } catch (err) {
      const mapped = toTetherError(err, what, this.connection.address);
      if (mapped instanceof AgentUnavailableError) throw mapped;
      throw new AgentUnavailableError(`${what} of ${this.connection.address} failed: ${mapped.message}`, {
        cause: mapped,
      });
    }
  }

  /**
   * A TCP connection to `port` inside the sandbox (127.0.0.1 unless `host` says otherwise),
   * through the agent's own connection, so it works with network none. Resolves with a
   * Duplex once connected; PortUnreachableError when nothing listens there.
   */
  tunnel(port: number, options?: TunnelOptions): Promise<TunnelStream> {
    return openTunnel(this.connection, port, options);
  }

  /** Closes the connection; running commands keep running in the agent. */
  close(): void {
    this.connection.close();
  }
}

/** Connects to an agent and checks that it answers. */
export async function connect(options: ConnectionOptions): Promise<Agent> {
  const agent = new Agent(options);
  try {
    await agent.health();
  } catch (err) {
    agent.close();
    throw err;
  }
  return agent;
}
