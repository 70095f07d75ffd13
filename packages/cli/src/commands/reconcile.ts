import { Sandboxes } from "@tether/host";
import { Command } from "commander";

/** `tether reconcile`: makes the registry agree with the backends, then enforces timeouts. */
export function reconcileCommand(): Command {
  return new Command("reconcile")
    .summary("make the registry agree with the backends; enforce timeouts")
    .description(
      "Adopts labelled sandboxes the registry does not know, marks recorded ones that are gone\n" +
        "(state error), corrects drifted states, settles creations whose process died, then stops\n" +
        "or removes sandboxes whose timeout passed. Every tether command does this on start too.",
    )
    .option("--json", "print the report as JSON")
    .action(async (flags: { json?: boolean }) => {
      const sandboxes = new Sandboxes({ maintainOnStart: false });
      try {
        const report = await sandboxes.reconcile();
        const expired = await sandboxes.expire();
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ ...report, expired }, null, 2)}\n`);
          return;
        }
        const lines = [
          ...report.adopted.map((id) => `adopted ${id}`),
          ...report.vanished.map((id) => `vanished ${id} (marked error)`),
          ...report.fixed.map((f) => `fixed ${f.id}: ${f.from} -> ${f.to}`),
          ...report.interrupted.map((i) => `interrupted create ${i.id}: ${i.outcome}`),
          ...expired.map((e) =>
            e.error
              ? `expired ${e.id} (${e.reason}): ${e.action} failed: ${e.error}`
              : `expired ${e.id} (${e.reason}): ${e.action === "stop" ? "stopped" : "removed"}`,
          ),
          ...report.skipped.map((s) => `skipped ${s.backend}: ${s.reason}`),
        ];
        process.stdout.write(lines.length > 0 ? `${lines.join("\n")}\n` : "nothing to do\n");
      } finally {
        sandboxes.close();
      }
    });
}
