import { randomBytes } from "node:crypto";
import type { CocoonTarget } from "@tether/agent";
import { COCOON_DEFAULT_VSOCK_PORT } from "@tether/protocol/constants";
import { Command, InvalidArgumentError } from "commander";
import { collectEnv, EXIT } from "../options.js";

interface ClientFlags {
  cid?: number;
  port: number;
  unix?: string;
  tcp?: { host: string; port: number };
  token?: string;
  env: Record<string, string>;
  reseed?: boolean;
  regenMachineId?: boolean;
}

/** Host entropy sent by --reseed: the most the agent accepts. */
const RESEED_BYTES = 512;

function parseUint(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError("expected an unsigned integer");
  return n;
}

function parseHostPort(value: string): { host: string; port: number } {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(value);
  if (!match || Number(match[2]) > 65535) throw new InvalidArgumentError("expected HOST:PORT");
  return { host: match[1] || "127.0.0.1", port: Number(match[2]) };
}

/** `tether client --cid N --port P -- ARGV`: a cocoon-style line-JSON exec client. */
export function clientCommand(): Command {
  return new Command("client")
    .summary("run a command through a cocoon-style exec listener (vsock, unix socket or TCP)")
    .description(
      "Speaks the cocoon-agent line-JSON exec protocol (tetherd --cocoon-vsock/--cocoon-socket/--cocoon-tcp):\n" +
        "stdin is forwarded in 32 KiB chunks and the command's exit code becomes ours. --reseed instead sends\n" +
        "512 bytes of this host's randomness for the guest's kernel pool (after cloning a VM from a snapshot).",
    )
    .option("--cid <cid>", "the guest's vsock context id", parseUint)
    .option("--port <port>", "the vsock port", parseUint, COCOON_DEFAULT_VSOCK_PORT)
    .option("--unix <path>", "connect to this unix socket instead of vsock")
    .option("--tcp <host:port>", "connect to this TCP address instead of vsock", parseHostPort)
    .option("--token <token>", "the agent's access token, sent first (env TETHER_ACCESS_TOKEN; TCP needs it)")
    .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", collectEnv, {})
    .option("--reseed", "reseed the guest's entropy pool instead of running a command")
    .option("--regen-machine-id", "with --reseed: also write a fresh /etc/machine-id")
    .argument("[command...]", "the command and its arguments, after --")
    .passThroughOptions()
    .action(async function (this: Command, argv: string[], flags: ClientFlags) {
      const targets = [flags.cid !== undefined, flags.unix !== undefined, flags.tcp !== undefined].filter(Boolean);
      if (targets.length !== 1) this.error("error: give exactly one of --cid N, --unix PATH or --tcp HOST:PORT");
      if (flags.reseed && argv.length > 0) this.error("error: --reseed runs no command");
      if (!flags.reseed && argv.length === 0) this.error("error: give a command after --, or --reseed");
      if (flags.regenMachineId && !flags.reseed) this.error("error: --regen-machine-id goes with --reseed");
      const target: CocoonTarget =
        flags.cid !== undefined
          ? { cid: flags.cid, port: flags.port }
          : flags.unix !== undefined
            ? { unix: flags.unix }
            : { tcp: flags.tcp as { host: string; port: number } };
      const request = flags.reseed
        ? { reseed: randomBytes(RESEED_BYTES), regenMachineId: flags.regenMachineId ?? false }
        : { argv, env: Object.keys(flags.env).length > 0 ? flags.env : undefined };
      // Loaded on demand, like `tether agent`: other commands never need the agent's code.
      const { CocoonError, runCocoonClient } = await import("@tether/agent");
      try {
        process.exitCode = await runCocoonClient(
          target,
          request,
          { stdin: flags.reseed ? undefined : process.stdin, stdout: process.stdout, stderr: process.stderr },
          flags.token ?? process.env.TETHER_ACCESS_TOKEN,
        );
      } catch (err) {
        const what = err instanceof CocoonError ? "the agent answered" : "error";
        process.stderr.write(`tether client: ${what}: ${(err as Error).message}\n`);
        process.exitCode = EXIT.failure;
      }
      // stdin may still be open (a terminal): do not wait for it.
      await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
      process.exit();
    });
}
