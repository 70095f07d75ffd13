import { Command, InvalidArgumentError } from "commander";
import { forEachSandbox } from "../each-sandbox.js";
import { sandboxes } from "../sandboxes.js";

/** `tether stop ID...`: SIGTERM to each sandbox, SIGKILL after --time seconds. */
export function stopCommand(): Command {
  return new Command("stop")
    .summary("stop sandboxes (SIGTERM, then SIGKILL)")
    .argument("<ids...>", "sandbox ids or names")
    .option("-t, --time <seconds>", "seconds to wait before SIGKILL (default 10)", seconds)
    .action((ids: string[], flags: { time?: number }) =>
      forEachSandbox(ids, (id) => sandboxes().stop(id, { timeoutSeconds: flags.time })),
    );
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`"${value}" is not a number of seconds`);
  return n;
}
