import { SandboxNotFoundError } from "@tether/host";
import { Command } from "commander";
import { forEachSandbox } from "../each-sandbox.js";
import { SandboxInUseError } from "../errors.js";
import { place } from "../place.js";

/** `tether rm [-f] ID...`: removes sandboxes and their host directories. */
export function rmCommand(): Command {
  return new Command("rm")
    .summary("remove sandboxes (-f: also running ones)")
    .argument("<ids...>", "sandbox ids or names")
    .option("-f, --force", "remove running or paused sandboxes too")
    .action((ids: string[], flags: { force?: boolean }) =>
      forEachSandbox(ids, async (id) => {
        const info = await place()
          .get(id)
          .catch(async (err: unknown) => {
            // Removed behind our back: still clear what is left of it (its host directory).
            if (err instanceof SandboxNotFoundError) await place().remove(id);
            throw err;
          });
        if (!flags.force && (info.state === "running" || info.state === "paused")) {
          throw new SandboxInUseError(info.id, info.state);
        }
        await place().remove(info.id);
      }),
    );
}
