import { startAgent } from "./agent.js";
import { takeAccessTokenFile } from "./auth/token-file.js";
import { createLogger } from "./logger.js";
import { parseTetherdArgs, tetherdHelp } from "./tetherd-args.js";

/** `tetherd`: runs the agent until SIGTERM or SIGINT. A bad command line throws UsageError. */
export async function main(argv = process.argv): Promise<void> {
  const opts = parseTetherdArgs(argv.slice(2));
  if (opts === "help") {
    process.stdout.write(tetherdHelp());
    return;
  }
  const command = opts.command;

  const logger = createLogger(opts.logLevel);
  const agent = await startAgent({
    host: opts.host,
    port: opts.tcp ? opts.port : false,
    socket: opts.socket,
    socketOwner: opts.socketOwner,
    transferDir: opts.transferDir,
    importDir: opts.importDir,
    accessToken: opts.accessTokenFile
      ? takeAccessTokenFile(opts.accessTokenFile)
      : (opts.accessToken ?? process.env.TETHER_ACCESS_TOKEN),
    inheritEnv: opts.inheritEnv,
    supervise: command.length > 0 ? command : undefined,
    superviseStopTimeoutMs: opts.stopTimeout,
    defaultUser: opts.user,
    defaultWorkdir: opts.workdir,
    exposeLoopback: opts.exposeLoopback,
    gitBaseUrl: opts.gitBaseUrl,
    cocoon:
      opts.cocoonVsock !== undefined || opts.cocoonSocket || opts.cocoonTcp
        ? {
            vsockPort: opts.cocoonVsock,
            socket: opts.cocoonSocket,
            tcp: opts.cocoonTcp && { ...opts.cocoonTcp, insecure: opts.cocoonTcpInsecure },
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
    // What was logged is written before the process ends, pino loaded or not yet.
    Promise.all([agent.close(), logger.load()]).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
