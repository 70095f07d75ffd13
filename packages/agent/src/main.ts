import { AGENT_DEFAULT_PORT } from "@tether/protocol";
import { Command, InvalidArgumentError } from "commander";
import { startAgent } from "./agent.js";
import { createLogger } from "./logger.js";

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError("expected a port 0-65535");
  return port;
}

/** `tetherd`: runs the agent until SIGTERM or SIGINT. */
export async function main(argv = process.argv): Promise<void> {
  const program = new Command("tetherd")
    .description("Tether's in-sandbox agent: processes, files and more over Connect/gRPC and HTTP")
    .option("--host <host>", "TCP address to listen on", "127.0.0.1")
    .option("--port <port>", "TCP port to listen on (0 picks one)", parsePort, AGENT_DEFAULT_PORT)
    .option("--no-tcp", "do not listen on TCP (use --socket)")
    .option("--socket <path>", "also listen on this unix socket (mode 0600)")
    .option("--access-token <token>", "require this token (env TETHER_ACCESS_TOKEN)")
    .option("--user <name>", "default user for requests that name none")
    .option("--workdir <dir>", "default working directory")
    .option("--log-level <level>", "pino log level", process.env.TETHER_LOG_LEVEL ?? "info")
    .parse(argv);
  const opts = program.opts<{
    host: string;
    port: number;
    tcp: boolean;
    socket?: string;
    accessToken?: string;
    user?: string;
    workdir?: string;
    logLevel: string;
  }>();
  if (!opts.tcp && !opts.socket) program.error("--no-tcp needs --socket: the agent must listen somewhere");

  const logger = createLogger(opts.logLevel);
  const agent = await startAgent({
    host: opts.host,
    port: opts.tcp ? opts.port : false,
    socket: opts.socket,
    accessToken: opts.accessToken ?? process.env.TETHER_ACCESS_TOKEN,
    defaultUser: opts.user,
    defaultWorkdir: opts.workdir,
    logger,
  });
  // The token must not leak to the processes we start.
  delete process.env.TETHER_ACCESS_TOKEN;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    agent.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
