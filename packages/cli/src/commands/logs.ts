import { Command, InvalidArgumentError } from "commander";
import { flushOutput } from "../attach.js";
import { sandboxes } from "../sandboxes.js";

/** `tether logs [-f] [--tail N] ID`: the sandbox's output (agent and supervised command). */
export function logsCommand(): Command {
  return new Command("logs")
    .summary("print a sandbox's output (-f to follow)")
    .description(
      "Prints what the sandbox's agent and its image's command wrote, stdout to stdout and\n" +
        "stderr to stderr. With -f, keeps printing until the sandbox stops or Ctrl-C.",
    )
    .argument("<id>", "sandbox id or name")
    .option("-f, --follow", "keep printing new output")
    .option("-n, --tail <lines>", "only the last N lines", lines)
    .action(async (id: string, flags: { follow?: boolean; tail?: number }) => {
      const stop = new AbortController();
      const onSignal = () => {
        stop.abort();
        // The engine's log stream may not end at once when torn down; do not wait on it.
        setTimeout(() => void flushOutput().then(() => process.exit(0)), 200).unref();
      };
      // on, not once: a second Ctrl-C while the stream winds down must not kill us mid-flush.
      process.on("SIGINT", onSignal);
      try {
        for await (const chunk of sandboxes().logs(id, {
          follow: flags.follow,
          tail: flags.tail,
          signal: stop.signal,
        })) {
          const out = chunk.stream === "stderr" ? process.stderr : process.stdout;
          if (!out.write(chunk.data)) await new Promise((resolve) => out.once("drain", resolve));
        }
      } finally {
        process.off("SIGINT", onSignal);
      }
      await flushOutput();
      process.exit();
    });
}

function lines(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`"${value}" is not a number of lines`);
  return n;
}
