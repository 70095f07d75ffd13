import { NotFoundError, PermissionDeniedError } from "@tether/sdk";
import { type Command, InvalidArgumentError } from "commander";

/** Collects `-e KEY=VALUE` (or `-e KEY`, taking this shell's value) into an env map. */
export function collectEnv(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf("=");
  const key = eq === -1 ? value : value.slice(0, eq);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new InvalidArgumentError(`"${value}" is not KEY=VALUE`);
  if (eq !== -1) return { ...previous, [key]: value.slice(eq + 1) };
  const local = process.env[key];
  if (local === undefined) throw new InvalidArgumentError(`${key} is not set here; pass ${key}=VALUE`);
  return { ...previous, [key]: local };
}

/** Exit codes of tether's own failures, as docker run uses them. */
export const EXIT = {
  /** Bad flags or arguments. */
  usage: 2,
  /** tether itself failed (agent did not start, connection lost). */
  failure: 125,
  /** The command exists but cannot be run. */
  cannotRun: 126,
  /** The command was not found. */
  notFound: 127,
} as const;

/** An error class, as an exit code table names it. */
type ErrorClass = abstract new (...args: never[]) => Error;

/** Exit codes of a command tether could not run in a sandbox, by the class of what stopped it, as docker run's. */
export const COMMAND_EXIT_CODES: readonly (readonly [ErrorClass, number])[] = [
  [NotFoundError, EXIT.notFound],
  [PermissionDeniedError, EXIT.cannotRun],
];

/** The exit code for `err`: that of the first class in `table` it is an instance of, else EXIT.failure. */
export function exitCodeOf(err: unknown, table: readonly (readonly [ErrorClass, number])[]): number {
  return table.find(([type]) => err instanceof type)?.[1] ?? EXIT.failure;
}

/**
 * Splits `ID [options] [--] ARGV` after commander has stopped at ID (passThroughOptions):
 * options between the id and the command still belong to us, and land in `command.opts()`.
 */
export function optionsAfterTarget(command: Command, args: string[]): [string, string[]] {
  const [target, ...rest] = args;
  const { operands, unknown } = command.parseOptions(rest);
  if (unknown.length > 0 && unknown[0].startsWith("-")) command.error(`error: unknown option '${unknown[0]}'`);
  return [target, [...operands, ...unknown]];
}
