import { DEFAULT_GC_AGE_MS, Sandboxes } from "@tether/host";
import { Command } from "commander";
import { parseDuration } from "../lifecycle-options.js";

/** `tether gc [--older-than DURATION]`: archives stale sandboxes. */
export function gcCommand(): Command {
  return new Command("gc")
    .summary("archive stopped and failed sandboxes older than a threshold; remove unused agent bundles")
    .description(
      "Archives sandboxes stopped or failed at least --older-than ago (default 7d): their output,\n" +
        "work directory (bwrap, local) and record go to $TETHER_HOME/archive/<date>-<id>/, their\n" +
        "container or processes are removed, and the registry records them as archived\n" +
        "(`tether ls --state archived` lists them). Agent bundles of older versions that no container\n" +
        "mounts and no create used for --older-than (and a day at least) are removed.",
    )
    .option("--older-than <duration>", "how long ago they stopped, e.g. 12h, 7d, 0 for all", parseDuration)
    .option("--json", "print the report as JSON")
    .action(async (flags: { olderThan?: number; json?: boolean }) => {
      const sandboxes = new Sandboxes();
      try {
        const report = await sandboxes.gc({ olderThanMs: flags.olderThan ?? DEFAULT_GC_AGE_MS });
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const lines = [
          ...report.archived.map((a) => `archived ${a.id} -> ${a.path}`),
          ...report.failed.map((f) => `could not archive ${f.id}: ${f.error}`),
          ...(report.bundles?.removed ?? []).map((b) => `removed agent bundle ${b.dir} (${mib(b.bytes)} MiB)`),
        ];
        process.stdout.write(lines.length > 0 ? `${lines.join("\n")}\n` : "nothing to archive\n");
        if (report.failed.length > 0) process.exitCode = 1;
      } finally {
        sandboxes.close();
      }
    });
}

function mib(bytes: number): string {
  return (bytes / (1 << 20)).toFixed(0);
}
