import { Command } from "commander";
import { forEachSandbox } from "../each-sandbox.js";
import { sandboxes } from "../sandboxes.js";

/** `tether start ID...`: starts stopped sandboxes and waits for their agents. */
export function startCommand(): Command {
  return new Command("start")
    .summary("start stopped sandboxes")
    .argument("<ids...>", "sandbox ids or names")
    .action((ids: string[]) => forEachSandbox(ids, (id) => sandboxes().start(id)));
}
