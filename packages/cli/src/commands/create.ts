import { BACKENDS, type BackendKind } from "@tether/host";
import { Command } from "commander";
import { addCreateOptions, type CreateFlags, createOptionsFrom } from "../create-options.js";
import {
  addLifecycleOptions,
  type LifecycleFlags,
  lifecycleOptionsFrom,
  warnIfLoopbackReachable,
  warnIfUnisolated,
} from "../lifecycle-options.js";
import { optionsAfterTarget } from "../options.js";
import { place } from "../place.js";
import { progress } from "../sandboxes.js";

/** `tether create IMAGE [options]` or `tether create --backend bwrap|local`: creates and starts a sandbox, prints its id. */
export function createCommand(): Command {
  const command = addCreateOptions(
    new Command("create")
      .summary("create a sandbox (from an image, or with --backend bwrap|local) and print its id")
      .description(
        "Creates a sandbox from a local image (never pulled), starts it and waits until its agent\n" +
          "answers. The image's own entrypoint/cmd runs supervised unless --no-command.\n" +
          "A COMMAND after the image replaces the image's entrypoint and cmd (as in docker create).\n" +
          "Options may follow the image too; the command starts after -- or at the first non-option.\n" +
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
    .action(async function (this: Command, image: string | undefined, args: string[]) {
      const hostBackend = (backend: BackendKind | undefined) => backend !== undefined && !BACKENDS[backend].image;
      let argv: string[];
      let from: string | undefined;
      if (hostBackend(this.opts<LifecycleFlags>().backend)) {
        // Without an image, every argument is the command, options-looking ones included.
        // passThroughOptions keeps a `--` that follows the first argument.
        const rest = args[0] === "--" ? args.slice(1) : args;
        argv = image !== undefined ? [image, ...rest] : rest;
      } else if (image !== undefined) {
        // `IMAGE --memory 64m --read-only -- ARGV`: options up to the first operand (or `--`) are
        // ours, as before the image; an unknown one is a usage error, not the command's first word.
        [from, argv] = optionsAfterTarget(this, [image, ...args]);
        if (hostBackend(this.opts<LifecycleFlags>().backend)) {
          this.error("error: --backend bwrap|local goes before the command; these backends take no image");
        }
      } else {
        argv = [];
      }
      const flags = this.opts<CreateFlags & LifecycleFlags>();
      if (!from && !hostBackend(flags.backend)) {
        this.error("error: give an image, or --backend bwrap|local for a sandbox without one");
      }
      progress(from ? `creating a sandbox from ${from}` : `creating a ${flags.backend} sandbox`);
      const options = { ...createOptionsFrom(flags), ...lifecycleOptionsFrom(flags) };
      if (argv.length > 0) options.command = argv;
      const info = await place().create(from, options);
      warnIfUnisolated(info);
      warnIfLoopbackReachable(info, options.network);
      process.stdout.write(`${info.id}\n`);
    });
}
