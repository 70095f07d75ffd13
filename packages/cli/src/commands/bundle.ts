import { bundleCommand as buildBundleCommand } from "@tether/bundle";
import { Command } from "commander";

/** `tether bundle [--out DIR]`: builds (or reuses) the portable agent bundle. */
export function bundleCommand(): Command {
  return new Command("bundle")
    .summary("build the portable agent bundle")
    .description(
      "Builds the agent bundle (pinned Node.js runtime, its libraries and loader, tetherd) into\n" +
        "DIR, or into the bundle cache when no --out is given; a bundle already there is reused.",
    )
    .option("--out <dir>", "directory to build into")
    .action(async (flags: { out?: string }) => {
      await buildBundleCommand(flags.out);
    });
}
