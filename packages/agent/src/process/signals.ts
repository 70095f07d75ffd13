import { constants } from "node:os";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Turns a signal name from a request ("INT", "sigusr1", "SIGWINCH") into Node's name,
 * refusing anything this system does not know (invalid_argument, nothing sent).
 */
export function parseSignalName(name: string): NodeJS.Signals {
  const upper = name.trim().toUpperCase();
  if (!upper) throw new ConnectError("signal is required: a name like INT, TERM or USR1", Code.InvalidArgument);
  const full = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  if (!Object.hasOwn(constants.signals, full)) {
    throw new ConnectError(
      `unknown signal ${JSON.stringify(name)}: use one of ${Object.keys(constants.signals).join(", ")}`,
      Code.InvalidArgument,
    );
  }
  return full as NodeJS.Signals;
}
