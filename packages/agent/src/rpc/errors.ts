import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { UnknownUserError } from "../auth/users.js";

/** Maps errno errors and our typed errors to the Connect code a client can act on. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof UnknownUserError) return new ConnectError(err.message, Code.PermissionDenied);
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  switch (errno) {
    case "ENOENT":
      return new ConnectError(message, Code.NotFound);
    case "EACCES":
    case "EPERM":
      return new ConnectError(message, Code.PermissionDenied);
    case "EEXIST":
    case "ENOTEMPTY":
      return new ConnectError(message, Code.AlreadyExists);
    case "ENOTDIR":
    case "EISDIR":
    case "EINVAL":
    case "ENAMETOOLONG":
    case "ELOOP":
      return new ConnectError(message, Code.InvalidArgument);
    case "ENOSPC":
    case "EDQUOT":
      return new ConnectError(message, Code.ResourceExhausted);
    default:
      return new ConnectError(message, Code.Internal);
  }
}

/** The HTTP status for the same errors, for the plain HTTP endpoints. */
export function httpStatusOf(err: unknown): number {
  const code = toConnectError(err).code;
  switch (code) {
    case Code.NotFound:
      return 404;
    case Code.PermissionDenied:
      return 403;
    case Code.AlreadyExists:
      return 409;
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.ResourceExhausted:
      return 507;
    default:
      return 500;
  }
}

/** Turns whatever a handler throws, unary or mid-stream, into a proper Connect error. */
export const errorMapper: Interceptor = (next) => async (req) => {
  try {
    const res = await next(req);
    if (!res.stream) return res;
    return { ...res, message: mapStreamErrors(res.message) };
  } catch (err) {
    throw toConnectError(err);
  }
};

async function* mapStreamErrors<T>(source: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* source;
  } catch (err) {
    throw toConnectError(err);
  }
}
