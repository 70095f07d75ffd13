import { AGENT_DEFAULT_PORT, COCOON_DEFAULT_VSOCK_PORT } from "@tether/protocol/constants";
import { Command, InvalidArgumentError } from "commander";
import { DEFAULT_SUPERVISE_STOP_TIMEOUT_MS, startAgent } from "./agent.js";
import { takeAccessTokenFile } from "./auth/token-file.js";
import { createLogger } from "./logger.js";

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError("expected a port 0-65535");
  return port;
}

function parseHostPort(value: string): { host: string; port: number } {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(value);
  if (!match) throw new InvalidArgumentError("expected HOST:PORT, e.g. 127.0.0.1:1024");
  return { host: match[1] || "127.0.0.1", port: parsePort(match[2]) };
}

function parseOwner(value: string): { uid: number; gid: number } {
  const match = /^(\d+):(\d+)$/.exec(value);
  if (!match) throw new InvalidArgumentError("expected UID:GID, e.g. 1000:1000");
  return { uid: Number(match[1]), gid: Number(match[2]) };
}

function parseMs(value: string): number {
  const ms = Number(value);
  if (!Number.isInteger(ms) || ms < 0) throw new InvalidArgumentError("expected milliseconds, an integer >= 0");
  return ms;
}

/** `tetherd`: runs the agent until SIGTERM or SIGINT. */
export async function main(argv = process.argv): Promise<void> {
  const program = new Command("tetherd")
    .description("Tether's in-sandbox agent: processes, files and more over Connect/gRPC and HTTP")
    .option("--host <host>", "TCP address to listen on", "127.0.0.1")
    .option("--port <port>", "TCP port to listen on (0 picks one)", parsePort, AGENT_DEFAULT_PORT)
    .option("--no-tcp", "do not listen on TCP (use --socket)")
    .option("--socket <path>", "also listen on this unix socket (mode 0600)")
    .option("--socket-owner <uid:gid>", "chown the unix socket to this user and group", parseOwner)
    .option("--transfer-dir <path>", "a directory shared with the host, for copies without streaming")
    .option("--import-dir <path>", "a read-only directory the host stages files to copy in (else --transfer-dir)")
    .option("--access-token <token>", "require this token (env TETHER_ACCESS_TOKEN)")
    .option("--access-token-file <path>", "read the token from this file, then delete the file")
    .option("--inherit-env", "seed the default env vars from this environment (minus TETHER_*, NODE_OPTIONS, LD_*)")
    .option(
      "--stop-timeout <ms>",
      "on SIGTERM, how long the supervised command gets before SIGKILL",
      parseMs,
      DEFAULT_SUPERVISE_STOP_TIMEOUT_MS,
    )
    .option("--user <name>", "default user for requests that name none")
    .option("--workdir <dir>", "default working directory")
    .option(
      "--expose-loopback",
      "re-expose services listening on loopback only on this machine's other addresses (for sandboxes with a network)",
    )
    .option("--no-expose-loopback", "do not re-expose loopback-only services (the default)")
    .option("--git-base-url <url>", "where workspace init clones yolo's OWNER/NAME from", "https://github.com")
    .option("--cocoon-vsock [port]", "serve cocoon-style line-JSON exec on this vsock port (host CID only)", parsePort)
    .option("--cocoon-socket <path>", "serve cocoon-style line-JSON exec on this unix socket")
    .option("--cocoon-tcp <host:port>", "serve cocoon-style line-JSON exec on this TCP address", parseHostPort)
    .option("--log-level <level>", "pino log level", process.env.TETHER_LOG_LEVEL ?? "info")
    .argument("[command...]", "supervise this command (after --): output to ours, SIGTERM passed on, exit logged")
    // Everything after the command's name is the command's, not ours.
    .passThroughOptions()
    .parse(argv);
  const opts = program.opts<{
    host: string;
    port: number;
    tcp: boolean;
    socket?: string;
    socketOwner?: { uid: number; gid: number };
    transferDir?: string;
    importDir?: string;
    accessToken?: string;
    accessTokenFile?: string;
    inheritEnv?: boolean;
    stopTimeout: number;
    user?: string;
    workdir?: string;
    exposeLoopback?: boolean;
    gitBaseUrl: string;
    cocoonVsock?: number | true;
    cocoonSocket?: string;
    cocoonTcp?: { host: string; port: number };
    logLevel: string;
  }>();
  if (!opts.tcp && !opts.socket) program.error("--no-tcp needs --socket: the agent must listen somewhere");
  if (opts.accessToken && opts.accessTokenFile) program.error("give --access-token or --access-token-file, not both");
  const command = program.args;

  const logger = createLogger(opts.logLevel);
  const agent = await startAgent({
    host: opts.host,
    port: opts.tcp ? opts.port : false,
    socket: opts.socket,
    socketOwner: opts.socketOwner,
    transferDir: opts.transferDir,
    importDir: opts.importDir,
    accessToken: opts.accessTokenFile
      ? await takeAccessTokenFile(opts.accessTokenFile)
      : (opts.accessToken ?? process.env.TETHER_ACCESS_TOKEN),
    inheritEnv: opts.inheritEnv,
    supervise: command.length > 0 ? command : undefined,
    superviseStopTimeoutMs: opts.stopTimeout,
    defaultUser: opts.user,
    defaultWorkdir: opts.workdir,
    exposeLoopback: opts.exposeLoopback ?? false,
    gitBaseUrl: opts.gitBaseUrl,
    cocoon:
      opts.cocoonVsock !== undefined || opts.cocoonSocket || opts.cocoonTcp
        ? {
            vsockPort: opts.cocoonVsock === true ? COCOON_DEFAULT_VSOCK_PORT : opts.cocoonVsock,
            socket: opts.cocoonSocket,
            tcp: opts.cocoonTcp,
          }
        : undefined,
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
