import type { SandboxInfo } from "@tether/host";
import { Command } from "commander";
import { collectLabel } from "../create-options.js";
import { sandboxes } from "../sandboxes.js";

/** `tether ls [--json] [--label K=V]...`: the sandboxes under this TETHER_HOME. */
export function lsCommand(): Command {
  return new Command("ls")
    .summary("list sandboxes")
    .description("Lists the sandboxes under this TETHER_HOME: id, name, image, state, created.")
    .option("--json", "print a JSON array instead of a table")
    .option("--label <KEY=VALUE>", "only sandboxes with this label (repeatable)", collectLabel, {})
    .action(async (flags: { json?: boolean; label: Record<string, string> }) => {
      const list = await sandboxes().list({ labels: flags.label });
      list.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(list.map(publicView), null, 2)}\n`);
        return;
      }
      const now = Date.now();
      const rows = [
        ["ID", "NAME", "IMAGE", "STATE", "CREATED"],
        ...list.map((s) => [s.id, s.name, s.image, stateText(s), ago(now - s.createdAt.getTime())]),
      ];
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      const text = rows
        .map((r) =>
          r
            .map((cell, i) => cell.padEnd(widths[i]))
            .join("   ")
            .trimEnd(),
        )
        .join("\n");
      process.stdout.write(`${text}\n`);
    });
}

/** What `ls --json` shows of a sandbox: everything but its access token. */
function publicView(s: SandboxInfo) {
  return {
    id: s.id,
    name: s.name,
    image: s.image,
    state: s.state,
    backend: s.backend,
    labels: s.labels,
    createdAt: s.createdAt.toISOString(),
    ...(s.exitCode !== undefined ? { exitCode: s.exitCode } : {}),
    ...(s.endpoint ? { socket: s.endpoint.socket } : {}),
  };
}

function stateText(s: SandboxInfo): string {
  return s.exitCode !== undefined ? `${s.state} (${s.exitCode})` : s.state;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}
