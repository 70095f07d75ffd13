import { Command, InvalidArgumentError } from "commander";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${value} is not a positive whole number`);
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`${value} is not a TCP port`);
  return n;
}

interface ServeFlags {
  host: string;
  port: number;
  domain?: string;
  tlsCert?: string;
  tlsKey?: string;
  baseImage?: string;
  maxSandboxes?: number;
  maxCreates?: number;
}

/** `tether serve`: E2B's control plane and the sandbox proxy on one port, until SIGINT/SIGTERM. */
export function serveCommand(): Command {
  return new Command("serve")
    .summary("serve the E2B-compatible API and the sandbox proxy")
    .description(
      "Serves E2B's control-plane API (the unmodified e2b SDK works with E2B_API_URL and\n" +
        "E2B_SANDBOX_URL set to this server's URL and E2B_API_KEY to a key from `tether keys create`)\n" +
        "and the sandbox proxy, on one port, over the same sandboxes as the CLI (TETHER_HOME).\n" +
        "On SIGINT/SIGTERM it stops listening; sandboxes keep running and a restarted server adopts them.",
    )
    .option("--host <address>", "address to listen on (nothing beyond loopback unless asked)", "127.0.0.1")
    .option("--port <port>", "port to listen on", port, 3000)
    .option("--domain <domain>", "sandbox host names are <port>-<id>.<domain> (for getHost and signed URLs)")
    .option("--tls-cert <file>", "PEM certificate: serve HTTPS")
    .option("--tls-key <file>", "PEM private key of --tls-cert")
    .option(
      "--base-image <image>",
      "what the template `base` (the e2b SDK's default) means, unless a template is named base",
    )
    .option("--max-sandboxes <n>", "running and paused sandboxes per team (default 100)", positiveInt)
    .option("--max-creates <n>", "sandbox creations under way per team; more wait in line (default 10)", positiveInt)
    .action(async (flags: ServeFlags) => {
      // Loaded here: no other command pays for the HTTP framework.
      const { startServer } = await import("@tether/server");
      const server = await startServer({
        host: flags.host,
        port: flags.port,
        domain: flags.domain,
        tlsCert: flags.tlsCert,
        tlsKey: flags.tlsKey,
        baseImage: flags.baseImage,
        limits: { maxSandboxes: flags.maxSandboxes, maxCreatesInFlight: flags.maxCreates },
      });
      process.stdout.write(`tether serve: listening on ${server.url}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          resolve();
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
      });
      await server.close();
    });
}
