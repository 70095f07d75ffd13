import { Code, ConnectError } from "@connectrpc/connect";
import { toConnectError } from "../rpc/errors.js";

/**
 * Wraps a failed filesystem call into a Connect error that says what was attempted on
 * which path, with the Connect code of the errno (ENOENT -> not_found, ...).
 */
export function fsError(err: unknown, action: string, path: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const code = toConnectError(err).code;
  return new ConnectError(`${action} ${path}: ${errnoReason(err)}`, code, undefined, undefined, err);
}

/** A path the caller gave that cannot be used, whatever is on disk. */
export function invalidPath(path: string, reason: string): ConnectError {
  return new ConnectError(path ? `${reason}: ${path}` : reason, Code.InvalidArgument);
}

/** The message of an error without Connect's "[code]" prefix, for plain HTTP bodies. */
export function plainMessage(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage;
  return err instanceof Error ? err.message : String(err);
}

/** "no such file or directory" out of "ENOENT: no such file or directory, lstat '/x'". */
function errnoReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return /^E[A-Z0-9]+: ([^,]+)/.exec(message)?.[1] ?? message;
}

/** The errno code of a Node filesystem error, if it is one. */
export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
