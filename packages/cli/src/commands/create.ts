import { Command } from "commander";
import { addCreateOptions, type CreateFlags, createOptionsFrom } from "../create-options.js";
import {
  addLifecycleOptions,
  type LifecycleFlags,
  lifecycleOptionsFrom,
  warnIfUnisolated,
} from "../lifecycle-options.js";
import { progress, sandboxes } from "../sandboxes.js";

/** `tether create IMAGE [options]` or `tether create --backend bwrap|local`: creates and starts a sandbox, prints its id. */
export function createCommand(): Command {
  const command = addCreateOptions(
    new Command("create")
      .summary("create a sandbox (from an image, or with --backend bwrap|local) and print its id")
      .description(
        "Creates a sandbox from a local image (never pulled), starts it and waits until its agent\n" +
          "answers. The image's own entrypoint/cmd runs supervised unless --no-command.\n" +
          "A COMMAND after the image replaces the image's entrypoint and cmd (as in docker create).\n" +
          "With --backend bwrap or local there is no image: the sandbox runs on this machine's own\n" +
          "root filesystem (read-only under bwrap; as is, with NO isolation, under local), and the\n" +
          "arguments are the command to supervise.\n" +
          "Prints the sandbox id, only that, on stdout.",
      )
      .argument("[image]", "a local image, e.g. debian:bookworm (none with --backend bwrap|local)")
      .argument("[command...]", "run this instead of the image's entrypoint/cmd"),
  );
  return addLifecycleOptions(command)
    .passThroughOptions()
    .action(async function (
      this: Command,
      image: string | undefined,
      args: string[],
      flags: CreateFlags & LifecycleFlags,
    ) {
      const hostBackend = flags.backend === "bwrap" || flags.backend === "local";
      // Without an image, every argument is the command.
      // passThroughOptions keeps a `--` that follows the image.
      const rest = args[0] === "--" ? args.slice(1) : args;
      const argv = hostBackend && image !== undefined ? [image, ...rest] : rest;
      const from = hostBackend ? undefined : image;
      if (!from && !hostBackend) this.error("error: give an image, or --backend bwrap|local for a sandbox without one");
      progress(from ? `creating a sandbox from ${from}` : `creating a ${flags.backend} sandbox`);
      const options = { ...createOptionsFrom(flags), ...lifecycleOptionsFrom(flags) };
      if (argv.length > 0) options.command = argv;
      const info = await sandboxes().create(from, options);
      warnIfUnisolated(info);
      process.stdout.write(`${info.id}\n`);
    });
}
