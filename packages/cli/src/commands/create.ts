import { Command } from "commander";
import { addCreateOptions, type CreateFlags, createOptionsFrom } from "../create-options.js";
import { progress, sandboxes } from "../sandboxes.js";

/** `tether create IMAGE [options] [-- COMMAND]`: creates and starts a sandbox, prints its id. */
export function createCommand(): Command {
  return addCreateOptions(
    new Command("create")
      .summary("create a sandbox from an image and print its id")
      .description(
        "Creates a sandbox from a local image (never pulled), starts it and waits until its agent\n" +
          "answers. The image's own entrypoint/cmd runs supervised unless --no-command.\n" +
          "A COMMAND after the image replaces the image's entrypoint and cmd (as in docker create).\n" +
          "Prints the sandbox id, only that, on stdout.",
      )
      .argument("<image>", "a local image, e.g. debian:bookworm")
      .argument("[command...]", "run this instead of the image's entrypoint/cmd"),
  )
    .passThroughOptions()
    .action(async (image: string, command: string[], flags: CreateFlags) => {
      progress(`creating a sandbox from ${image}`);
      const options = createOptionsFrom(flags);
      // passThroughOptions keeps a `--` that follows the image.
      const argv = command[0] === "--" ? command.slice(1) : command;
      if (argv.length > 0) options.command = argv;
      const info = await sandboxes().create(image, options);
      process.stdout.write(`${info.id}\n`);
    });
}
