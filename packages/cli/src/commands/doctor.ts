import {
  backendStatuses,
  embeddedBackendKind,
  REGISTRY_FILE,
  registryHealth,
  repairRegistry,
  tetherHome,
} from "@tether/host";
import { Command } from "commander";
import { homeIsWritable } from "../embedded.js";
import { sandboxes } from "../sandboxes.js";
import { formatTable } from "../table.js";

/** `tether doctor`: which backends work here, which do not, and why. Always exits 0. */
export function doctorCommand(): Command {
  return new Command("doctor")
    .summary("show which sandbox backends are available here, and why not")
    .description(
      "Checks every backend: docker (the engine answers; its runtimes), bwrap (the binary is there\n" +
        "and a probe sandbox runs), local (always, with no isolation), vm (QEMU, a kernel and the tools to\n" +
        "build its disks, each missing one named with its Debian package; KVM or TCG, by a probe boot\n" +
        "cached per home; whether vsock is there, and what it uses instead; whether --network bridge gets\n" +
        "a TAP on Tether's bridge here or, and why, QEMU's user-mode NAT);\n" +
        "says which one `tether run`\n" +
        "without --image uses, and where TETHER_HOME and its registry are.\n" +
        "--repair: when the registry is damaged, moves it aside (tether.db.damaged-<time>), makes a new\n" +
        "one and reconciles, which adopts every sandbox the backends still have.",
    )
    .option("--json", "print JSON instead of text")
    .option("--repair", "set a damaged registry aside, make a new one and adopt the sandboxes that exist")
    .action(async (flags: { json?: boolean; repair?: boolean }) => {
      if (flags.repair) {
        const repair = repairRegistry(tetherHome());
        if (!repair.backup) {
          process.stdout.write(`the registry ${repair.file} is sound: nothing to repair\n`);
          return;
        }
        process.stdout.write(
          `the registry ${repair.file} was damaged (${repair.damage})\n` +
            `moved aside to ${repair.backup} (timeouts, metadata and history of its sandboxes stay there)\n`,
        );
        const report = await sandboxes().reconcile();
        process.stdout.write(
          `a new registry adopted ${report.adopted.length} sandbox(es)${report.adopted.length > 0 ? `: ${report.adopted.join(", ")}` : ""}\n`,
        );
        for (const skipped of report.skipped) {
          process.stdout.write(`not asked: ${skipped.backend} (${skipped.reason}); run tether reconcile later\n`);
        }
        return;
      }
      const [statuses, embedded] = await Promise.all([backendStatuses(), embeddedBackendKind()]);
      const home = tetherHome();
      const writable = await homeIsWritable(home);
      const registry = registryHealth(home);
      if (flags.json) {
        const out = {
          backends: statuses,
          embeddedDefault: embedded,
          home,
          registry: `${home}/${REGISTRY_FILE}`,
          registryHealth: registry,
          writable,
        };
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      const rows = [
        ["BACKEND", "AVAILABLE", "ISOLATION", "WHY"],
        ...statuses.map((s) => [s.kind, s.available ? "yes" : "no", s.isolation, s.reason]),
      ];
      process.stdout.write(`${formatTable(rows)}\n`);
      // vsock and TAP, point by point: what the host offers, and what the vm backend uses.
      const vm = statuses.find((s) => s.kind === "vm")?.details as { vsock?: string; tap?: string } | undefined;
      if (vm?.vsock) process.stdout.write(`\nvm agent transport (vsock): ${vm.vsock}\n`);
      if (vm?.tap) process.stdout.write(`vm network (TAP/bridge): ${vm.tap}\n`);
      process.stdout.write(
        `\nwithout --image, tether run uses: ${embedded}${embedded === "local" ? " (no isolation)" : ""}\n` +
          `TETHER_HOME: ${home} (${writable ? "writable" : "NOT writable: tether run falls back to a scratch home"})\n` +
          `registry: ${home}/${REGISTRY_FILE} (${registry})\n`,
      );
    });
}
