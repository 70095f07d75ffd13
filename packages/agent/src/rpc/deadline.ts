import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

/**
 * Throws the deadline_exceeded error of a streaming call whose deadline (Connect-Timeout-Ms)
 * passed. connect-es aborts the handler's signal then, and a stream that just stopped would
 * end cleanly: envd's end with deadline_exceeded, which the Python SDK turns into its
 * TimeoutException.
 */
export function throwIfDeadlinePassed(context: HandlerContext): void {
  if (!context.signal.aborted) return;
  const reason: unknown = context.signal.reason;
  if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) throw reason;
}
