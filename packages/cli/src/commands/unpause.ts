import { Command } from "commander";
import { forEachSandbox } from "../each-sandbox.js";
import { place } from "../place.js";

/** `tether unpause ID...`: thaws paused sandboxes. */
export function unpauseCommand(): Command {
  return new Command("unpause")
    .summary("thaw paused sandboxes")
    .argument("<ids...>", "sandbox ids or names")
    .action((ids: string[]) => forEachSandbox(ids, (id) => place().unpause(id)));
}
