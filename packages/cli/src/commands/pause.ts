import { Command } from "commander";
import { forEachSandbox } from "../each-sandbox.js";
import { place } from "../place.js";

/** `tether pause ID...`: freezes every process of each sandbox. */
export function pauseCommand(): Command {
  return new Command("pause")
    .summary("freeze sandboxes")
    .argument("<ids...>", "sandbox ids or names")
    .action((ids: string[]) => forEachSandbox(ids, (id) => place().pause(id)));
}
