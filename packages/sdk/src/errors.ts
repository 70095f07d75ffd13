import { Code, ConnectError } from "@connectrpc/connect";
import { TetherError } from "./tether-error.js";

export { TetherError };

/** The agent could not be reached: nothing listens there, or the connection dropped. */
export class AgentUnavailableError extends TetherError {}

/**
 * The connection a call was in flight on died under it (the agent closed it, or the socket
 * broke). The client dials a new connection for the next call; a command keeps running in
 * the agent and can be re-attached (`commands.connect(pid)`).
 */
export class ConnectionLostError extends AgentUnavailableError {}

/** The agent refused the access token (missing or wrong). */
export class AuthenticationError extends TetherError {}

/** A path, process or other named thing does not exist in the agent. */
export class NotFoundError extends TetherError {}

/** The request was malformed or named something of the wrong kind (a directory for a file). */
export class InvalidArgumentError extends TetherError {}

/** The agent's user (or the requested one) may not do this. */
export class PermissionDeniedError extends TetherError {}

/** The thing to create exists already. */
export class AlreadyExistsError extends TetherError {}

/** The agent ran out of disk or another resource. */
export class ResourceExhaustedError extends TetherError {}

/** A call did not finish within its deadline. */
export class TimeoutError extends TetherError {}

/** The agent cannot copy through a directory shared with the host here: stream the file instead. */
export class TransferUnavailableError extends TetherError {}

/**
 * The agent's answer ended before it held what the protocol promises: a stream closed before
 * its response or its last event, a reply without the entry it must carry.
 */
export class AgentProtocolError extends TetherError {}

/** Nothing accepts connections at a tunnel's host and port inside the sandbox (refused, unresolvable, unreachable). */
export class PortUnreachableError extends TetherError {
  readonly host: string;
  readonly port: number;

  constructor(message: string, options: { host: string; port: number; cause?: unknown }) {
    super(message, options);
    this.host = options.host;
    this.port = options.port;
  }
}

/** What a finished command left behind, for `CommandExitError`. */
export interface CommandExitDetails {
  argv: string[];
  /** Exit code; -1 when the process died from a signal. */
  exitCode: number;
  /** Signal name (`SIGKILL`) when the process died from a signal. */
  signal?: string;
  /** The agent's status text, like `exit status 3` or `signal: killed`. */
  status: string;
  stdout: string;
  stderr: string;
  /** Set when the agent killed the command because its `timeoutMs` or `idleTimeoutMs` passed. */
  timedOut?: boolean;
  /** Why the command ended, as the agent saw it. */
  reason?: "exited" | "signaled" | "timeout" | "idle_timeout" | "oom_killed";
  /** The agent's error text (envd sends `exit status 3` for a non-zero exit, too). */
  error?: string;
}

/** A command exited non-zero, died from a signal, or timed out. */
export class CommandExitError extends TetherError implements CommandExitDetails {
  readonly argv: string[];
  readonly exitCode: number;
  readonly signal?: string;
  readonly status: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly reason?: CommandExitDetails["reason"];
  readonly error?: string;

  constructor(details: CommandExitDetails) {
    super(commandExitMessage(details));
    this.argv = details.argv;
    this.exitCode = details.exitCode;
    this.signal = details.signal;
    this.status = details.status;
    this.stdout = details.stdout;
    this.stderr = details.stderr;
    this.timedOut = details.timedOut ?? false;
    this.reason = details.reason;
    this.error = details.error;
  }
}

/** execa-style: what ran, why it failed, then what it printed. */
function commandExitMessage(d: CommandExitDetails): string {
  const command = d.argv.map(quoteArg).join(" ");
  let reason: string;
  if (d.reason === "idle_timeout") reason = `printed nothing for too long (idle timeout) and was killed`;
  else if (d.timedOut) reason = `timed out and was killed${d.signal ? ` with ${d.signal}` : ""}`;
  else if (d.reason === "oom_killed") reason = "was killed by the kernel's OOM killer (out of memory)";
  else if (d.signal) reason = `was killed with ${d.signal}`;
  else if (d.exitCode !== 0) reason = `failed with exit code ${d.exitCode}`;
  else reason = `failed: ${d.error ?? d.status}`;
  const lines = [`Command ${reason}: ${command}`];
  for (const text of [d.stderr, d.stdout]) {
    const trimmed = text.trimEnd();
    if (trimmed) lines.push("", trimmed);
  }
  return lines.join("\n");
}

/** Quotes an argument the way a POSIX shell would need it, only when needed. */
export function quoteArg(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

const UNREACHABLE_ERRNOS = new Set(["ECONNREFUSED", "ENOENT", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENOTFOUND"]);

/**
 * Turns what a call threw into a typed error. `what` names the operation and its
 * subject (`stat /tmp/x`), so the message says what failed and where.
 */
export function toTetherError(err: unknown, what: string, address?: string): Error {
  if (err instanceof TetherError) return err;
  if (!(err instanceof ConnectError)) {
    const errno = (err as NodeJS.ErrnoException | undefined)?.code;
    if (errno && UNREACHABLE_ERRNOS.has(errno)) {
      return new AgentUnavailableError(`${what}: agent unreachable at ${address ?? "?"} (${errno})`, { cause: err });
    }
    return err instanceof Error ? err : new TetherError(`${what}: ${String(err)}`);
  }
  const message = `${what}: ${err.rawMessage}`;
  const options = { cause: err };
  if (isConnectionLost(err)) {
    return new ConnectionLostError(
      `${what}: the connection to the agent at ${address ?? "?"} was lost (${err.rawMessage}); ` +
        "the next call opens a new one, and a command keeps running in the agent (re-attach with commands.connect)",
      options,
    );
  }
  switch (err.code) {
    case Code.Unavailable:
      return new AgentUnavailableError(`${what}: agent unreachable at ${address ?? "?"} (${err.rawMessage})`, options);
    case Code.Unauthenticated:
      return new AuthenticationError(message, options);
    case Code.NotFound:
      return new NotFoundError(message, options);
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
      return new InvalidArgumentError(message, options);
    case Code.PermissionDenied:
      return new PermissionDeniedError(message, options);
    case Code.AlreadyExists:
      return new AlreadyExistsError(message, options);
    case Code.ResourceExhausted:
      return new ResourceExhaustedError(message, options);
    case Code.DeadlineExceeded:
      return new TimeoutError(message, options);
    default: {
      // Transport failures (socket gone, refused) surface as Internal/Unknown with an errno cause.
      const errno = (err.cause as NodeJS.ErrnoException | undefined)?.code;
      if (errno && UNREACHABLE_ERRNOS.has(errno)) {
        return new AgentUnavailableError(`${what}: agent unreachable at ${address ?? "?"} (${errno})`, options);
      }
      return new TetherError(`${message} [${Code[err.code]}]`, options);
    }
  }
}

/**
 * Node's errors for a stream whose HTTP/2 session died: closed with an error code (a GOAWAY
 * with one, as Node's rapid-reset defence sends), or refused after a GOAWAY.
 */
const SESSION_LOST_CODES = new Set(["ERR_HTTP2_SESSION_ERROR", "ERR_HTTP2_GOAWAY_SESSION"]);

/** True when a call failed because its connection died, not because of the call itself. */
function isConnectionLost(err: ConnectError): boolean {
  for (let cause: unknown = err.cause, depth = 0; cause instanceof Error && depth < 5; depth++) {
    if (cause instanceof ConnectionLostError) return true;
    const code = (cause as NodeJS.ErrnoException).code;
    if (code && SESSION_LOST_CODES.has(code)) return true;
    cause = cause.cause;
  }
  return false;
}

/** The same mapping for the plain HTTP endpoints, from a status and envd's JSON error body. */
export function httpError(status: number, body: string, what: string): TetherError {
  const detail = messageOf(body);
  const message = `${what}: ${detail || `HTTP ${status}`}`;
  switch (status) {
    case 400:
      return new InvalidArgumentError(message);
    case 401:
      return new AuthenticationError(message);
    case 403:
      return new PermissionDeniedError(message);
    case 404:
      return new NotFoundError(message);
    case 409:
      return new AlreadyExistsError(message);
    case 507:
      return new ResourceExhaustedError(message);
    default:
      return new TetherError(`${message} [HTTP ${status}]`);
  }
}

/** The message of envd's JSON error body, or the body's text when it is not one. */
export function messageOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message;
  } catch {
    // Not JSON: the raw text.
  }
  return body.trim();
}

/** tether serve answered with an error (`status` is its HTTP status). */
export class ServerError extends TetherError {
  readonly status: number;

  constructor(message: string, options: { status: number; cause?: unknown }) {
    super(message, options);
    this.status = options.status;
  }
}

/** The server has no such sandbox, or not for this API key's team. */
export class SandboxNotFoundError extends NotFoundError {
  readonly sandboxId: string;

  constructor(message: string, options: { sandboxId: string; cause?: unknown }) {
    super(message, options);
    this.sandboxId = options.sandboxId;
  }
}

/** The team is at its sandbox limit or its queue of creates is full: try again after `retryAfterMs`. */
export class RateLimitError extends ServerError {
  /** What the server's Retry-After said, in ms (1 s when it said nothing). */
  readonly retryAfterMs: number;

  constructor(message: string, options: { retryAfterMs: number; cause?: unknown }) {
    super(message, { status: 429, cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
  }
}
