import { type ParseArgsConfig, parseArgs } from "node:util";
import { AGENT_DEFAULT_PORT, COCOON_DEFAULT_VSOCK_PORT } from "@tether/protocol/constants";
import { DEFAULT_SUPERVISE_STOP_TIMEOUT_MS } from "./agent.js";

/**
 * tetherd's command line, parsed with node's own util.parseArgs.
 *
 * tetherd used commander, which with its help machinery cost about 3 ms of every sandbox's
 * start (loading 125 KB of code, then building the command); parseArgs is built in. The
 * flags, their defaults and errors are what they were.
 */

export interface TetherdArgs {
  host: string;
  port: number;
  tcp: boolean;
  socket?: string;
  socketOwner?: { uid: number; gid: number };
  transferDir?: string;
  importDir?: string;
  accessToken?: string;
  accessTokenFile?: string;
  inheritEnv: boolean;
  stopTimeout: number;
  user?: string;
  workdir?: string;
  exposeLoopback: boolean;
  gitBaseUrl: string;
  cocoonVsock?: number;
  cocoonSocket?: string;
  cocoonTcp?: { host: string; port: number };
  cocoonTcpInsecure: boolean;
  logLevel: string;
  /** The command to supervise: everything from the first argument that is not ours (or after `--`). */
  command: string[];
}

/** A command line tetherd cannot take; its message says why. */
export class UsageError extends Error {
  override name = "UsageError";
}

interface Flag {
  name: string;
  /** The value's placeholder; none for a switch. In brackets: the value may be left out. */
  value?: string;
  help: string;
  default?: string;
  short?: string;
}

const FLAGS: readonly Flag[] = [
  { name: "host", value: "<host>", help: "TCP address to listen on", default: "127.0.0.1" },
  { name: "port", value: "<port>", help: "TCP port to listen on (0 picks one)", default: String(AGENT_DEFAULT_PORT) },
  { name: "no-tcp", help: "do not listen on TCP (use --socket)" },
  { name: "socket", value: "<path>", help: "also listen on this unix socket (mode 0600)" },
  { name: "socket-owner", value: "<uid:gid>", help: "chown the unix socket to this user and group" },
  { name: "transfer-dir", value: "<path>", help: "a directory shared with the host, for copies without streaming" },
  {
    name: "import-dir",
    value: "<path>",
    help: "a read-only directory the host stages files to copy in (else --transfer-dir)",
  },
  { name: "access-token", value: "<token>", help: "require this token (env TETHER_ACCESS_TOKEN)" },
  { name: "access-token-file", value: "<path>", help: "read the token from this file, then delete the file" },
  { name: "inherit-env", help: "seed the default env vars from this environment (minus TETHER_*, NODE_OPTIONS, LD_*)" },
  {
    name: "stop-timeout",
    value: "<ms>",
    help: "on SIGTERM, how long the supervised command gets before SIGKILL",
    default: String(DEFAULT_SUPERVISE_STOP_TIMEOUT_MS),
  },
  { name: "user", value: "<name>", help: "default user for requests that name none" },
  { name: "workdir", value: "<dir>", help: "default working directory" },
  {
    name: "expose-loopback",
    help: "re-expose services listening on loopback only on this machine's other addresses (for sandboxes with a network)",
  },
  { name: "no-expose-loopback", help: "do not re-expose loopback-only services (the default)" },
  {
    name: "git-base-url",
    value: "<url>",
    help: "where workspace init clones yolo's OWNER/NAME from",
    default: "https://github.com",
  },
  {
    name: "cocoon-vsock",
    value: "[port]",
    help: `serve cocoon-style line-JSON exec on this vsock port (host CID only; ${COCOON_DEFAULT_VSOCK_PORT} if left out)`,
  },
  { name: "cocoon-socket", value: "<path>", help: "serve cocoon-style line-JSON exec on this unix socket" },
  {
    name: "cocoon-tcp",
    value: "<host:port>",
    help: "serve cocoon-style line-JSON exec on this TCP address (loopback; auth frame first with a token)",
  },
  {
    name: "cocoon-tcp-insecure",
    help: "allow --cocoon-tcp on a non-loopback address (the token travels in clear text)",
  },
  { name: "log-level", value: "<level>", help: "pino log level (env TETHER_LOG_LEVEL)", default: "info" },
  { name: "help", short: "h", help: "show this help" },
];

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs's options for the table, each with its default; TETHER_LOG_LEVEL, when set, is the log level's. */
function options(env: NodeJS.ProcessEnv = {}): Options {
  return Object.fromEntries(
    FLAGS.map((f) => {
      const fallback = f.name === "log-level" ? (env.TETHER_LOG_LEVEL ?? f.default) : f.default;
      return [
        f.name,
        {
          type: f.value ? "string" : "boolean",
          ...(f.short ? { short: f.short } : {}),
          ...(fallback !== undefined ? { default: fallback } : {}),
        },
      ];
    }),
  ) as Options;
}

/** For finding where the command starts, from tokens (where defaults never show). */
const SPLIT_OPTIONS = options();

/** `tetherd --help`. */
export function tetherdHelp(): string {
  const rows = FLAGS.map((f) => [
    `${f.short ? `-${f.short}, ` : ""}--${f.name}${f.value ? ` ${f.value}` : ""}`,
    f.default === undefined ? f.help : `${f.help} (default: ${JSON.stringify(f.default)})`,
  ]);
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return [
    "Usage: tetherd [options] [command...]",
    "",
    "Tether's in-sandbox agent: processes, files and more over Connect/gRPC and HTTP.",
    "",
    "Arguments:",
    "  command  supervise this command: output to ours, SIGTERM passed on, exit logged.",
    "           Everything from its name on is the command's (or put it after --).",
    "",
    "Options:",
    ...rows.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`),
    "",
  ].join("\n");
}

/** Parses tetherd's arguments (argv without node and the script); "help" when --help asks for it. */
export function parseTetherdArgs(args: readonly string[], env = process.env): TetherdArgs | "help" {
  const [own, command] = splitCommand(args);
  const parsed = (() => {
    try {
      return parseArgs({ args: own, options: options(env), strict: true, tokens: true });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  })();
  const v = parsed.values as Record<string, string | boolean | undefined>;
  if (v.help) return "help";
  const text = (name: string) => v[name] as string | undefined;
  const flag = (name: string) => v[name] === true;
  const value = <T>(name: string, parse: (value: string) => T): T | undefined => {
    const given = text(name);
    if (given === undefined) return undefined;
    try {
      return parse(given);
    } catch (err) {
      throw new UsageError(
        `option '--${name} ${FLAGS.find((f) => f.name === name)?.value}' argument '${given}' is invalid. ${(err as Error).message}`,
      );
    }
  };
  // Of --expose-loopback and --no-expose-loopback, the last one given counts.
  const loopback = (parsed.tokens as Token[])
    .filter((t) => t.kind === "option" && (t.name === "expose-loopback" || t.name === "no-expose-loopback"))
    .at(-1);
  const result: TetherdArgs = {
    host: text("host") as string,
    port: value("port", parsePort) as number,
    tcp: !flag("no-tcp"),
    socket: text("socket"),
    socketOwner: value("socket-owner", parseOwner),
    transferDir: text("transfer-dir"),
    importDir: text("import-dir"),
    accessToken: text("access-token"),
    accessTokenFile: text("access-token-file"),
    inheritEnv: flag("inherit-env"),
    stopTimeout: value("stop-timeout", parseMs) as number,
    user: text("user"),
    workdir: text("workdir"),
    exposeLoopback: loopback?.kind === "option" && loopback.name === "expose-loopback",
    gitBaseUrl: text("git-base-url") as string,
    cocoonVsock: value("cocoon-vsock", parsePort),
    cocoonSocket: text("cocoon-socket"),
    cocoonTcp: value("cocoon-tcp", parseHostPort),
    cocoonTcpInsecure: flag("cocoon-tcp-insecure"),
    logLevel: text("log-level") as string,
    command,
  };
  if (!result.tcp && !result.socket) throw new UsageError("--no-tcp needs --socket: the agent must listen somewhere");
  if (result.accessToken && result.accessTokenFile) {
    throw new UsageError("give --access-token or --access-token-file, not both");
  }
  return result;
}

/**
 * Our arguments and the command's: the command starts at the first argument that is neither
 * an option of ours nor an option's value, or after `--`. parseArgs finds it, knowing which
 * options take a value; unknown options are left for the strict parse to refuse.
 *
 * `--cocoon-vsock` with no port (last, or before another option) means the default port: it
 * is written `--cocoon-vsock=PORT` first, since parseArgs would take the next argument, even
 * an option, as its value. Only our arguments are rewritten, never the command's.
 */
function splitCommand(args: readonly string[]): [string[], string[]] {
  const own = [...args];
  for (;;) {
    const tokens = looseTokens(own);
    const first = tokens.find((t) => t.kind === "positional" || t.kind === "option-terminator");
    const end = first?.index ?? own.length;
    const bare = tokens.find(
      (t) =>
        t.kind === "option" &&
        t.index < end &&
        t.name === "cocoon-vsock" &&
        !t.inlineValue &&
        (t.value === undefined || t.value.startsWith("-")),
    );
    if (bare) {
      own[bare.index] = `--cocoon-vsock=${COCOON_DEFAULT_VSOCK_PORT}`;
      continue;
    }
    if (!first) return [own, []];
    return [own.slice(0, first.index), own.slice(first.index + (first.kind === "option-terminator" ? 1 : 0))];
  }
}

/** parseArgs's tokens for `args`, refusing nothing (an unknown option is a switch). */
type Token =
  | { kind: "option"; index: number; name: string; value?: string; inlineValue?: boolean }
  | { kind: "positional"; index: number; value: string }
  | { kind: "option-terminator"; index: number };
function looseTokens(args: string[]): Token[] {
  return parseArgs({ args, options: SPLIT_OPTIONS, strict: false, allowPositionals: true, tokens: true })
    .tokens as Token[];
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new Error("expected a port 0-65535");
  return port;
}

function parseHostPort(value: string): { host: string; port: number } {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(value);
  if (!match) throw new Error("expected HOST:PORT, e.g. 127.0.0.1:1024");
  return { host: match[1] || "127.0.0.1", port: parsePort(match[2]) };
}

function parseOwner(value: string): { uid: number; gid: number } {
  const match = /^(\d+):(\d+)$/.exec(value);
  if (!match) throw new Error("expected UID:GID, e.g. 1000:1000");
  return { uid: Number(match[1]), gid: Number(match[2]) };
}

function parseMs(value: string): number {
  if (!/^\d+$/.test(value)) throw new Error("expected milliseconds, an integer >= 0");
  return Number(value);
}
