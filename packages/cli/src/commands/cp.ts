import { Command } from "commander";
import { sandboxCopier } from "../sandboxes.js";

/** One side of a copy: a local path, or a path in a sandbox. */
type End = { sandbox?: undefined; path: string } | { sandbox: string; path: string };

/** `ID:PATH` is in a sandbox; a path starting with / or . (or without a colon) is local. */
export function parseEnd(arg: string): End {
  const colon = arg.indexOf(":");
  if (arg === "-" || arg.startsWith("/") || arg.startsWith(".") || colon <= 0) return { path: arg };
  return { sandbox: arg.slice(0, colon), path: arg.slice(colon + 1) || "/" };
}

/** `tether cp ID:SRC DST` and `tether cp SRC ID:DST`: files and directories, streamed. */
export function cpCommand(): Command {
  return new Command("cp")
    .summary("copy files and directories between this machine and a sandbox")
    .description(
      "Copies a file or a directory tree into (SRC ID:DST) or out of (ID:SRC DST) a sandbox,\n" +
        "through its agent's file API, so images without a shell or tar work too. Files go\n" +
        "through the sandbox's directories on this machine when they are shared (docker\n" +
        "sandboxes on a local engine), copied in the kernel; otherwise they are streamed.\n" +
        "An existing directory as DST receives SRC under its own name. '-' as the local side\n" +
        "copies one file from stdin or to stdout. File permission bits are kept (out of a\n" +
        "sandbox, without setuid, setgid or sticky). Out of a sandbox, a name that is not one\n" +
        "path component fails the copy, nothing is written through a link inside DST, and\n" +
        "links leading out of the copied tree are skipped with a warning.",
    )
    .usage("ID:SRC DST | SRC ID:DST")
    .argument("<source>")
    .argument("<destination>")
    .action(async function (this: Command, sourceArg: string, destinationArg: string) {
      const source = parseEnd(sourceArg);
      const destination = parseEnd(destinationArg);
      if ((source.sandbox === undefined) === (destination.sandbox === undefined)) {
        this.error("error: exactly one of SOURCE and DESTINATION must be ID:PATH (a path in a sandbox)");
      }
      const id = (source.sandbox ?? destination.sandbox) as string;
      const copy = await sandboxCopier(id);
      try {
        if (source.sandbox !== undefined) await copy.out(source.path, destination.path);
        else await copy.in(source.path, destination.path);
      } finally {
        copy.close();
      }
      for (const warning of copy.warnings) process.stderr.write(`tether: ${warning}\n`);
    });
}
