import { SANDBOX_STATES, type SandboxInfo, type SandboxState } from "@tether/host";
import { Command, InvalidArgumentError } from "commander";
import { collectLabel } from "../create-options.js";
import { backendLabel } from "../lifecycle-options.js";
import { place } from "../place.js";
import { formatTable } from "../table.js";

/** Collects `--state S` (repeatable, or comma-separated). */
function collectStates(value: string, previous: SandboxState[] | undefined): SandboxState[] {
  const states = value.split(",").map((s) => s.trim());
  for (const state of states) {
    if (!SANDBOX_STATES.includes(state as SandboxState)) {
      throw new InvalidArgumentError(`"${state}" is not a state (${SANDBOX_STATES.join(", ")})`);
    }
  }
  return [...(previous ?? []), ...(states as SandboxState[])];
}

/** `tether ls [--json] [--label K=V]... [--state S]...`: the sandboxes under this TETHER_HOME. */
export function lsCommand(): Command {
  return new Command("ls")
    .summary("list sandboxes")
    .description(
      "Lists the sandboxes under this TETHER_HOME: id, name, image, backend, state, created.\n" +
        "Archived sandboxes (see `tether gc`) only with --state archived.",
    )
    .option("--json", "print a JSON array instead of a table")
    .option("--label <KEY=VALUE>", "only sandboxes with this label (repeatable)", collectLabel, {})
    .option("--state <state>", `only sandboxes in this state (repeatable): ${SANDBOX_STATES.join(", ")}`, collectStates)
    .action(async (flags: { json?: boolean; label: Record<string, string>; state?: SandboxState[] }) => {
      const list = await place().list({ labels: flags.label, states: flags.state });
      list.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(list.map(publicView), null, 2)}\n`);
        return;
      }
      const now = Date.now();
      const rows = [
        ["ID", "NAME", "IMAGE", "BACKEND", "STATE", "CREATED"],
        ...list.map((s) => [s.id, s.name, s.image, backendLabel(s), stateText(s), ago(now - s.createdAt.getTime())]),
      ];
      process.stdout.write(`${formatTable(rows)}\n`);
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
    isolation: s.isolation,
    labels: s.labels,
    createdAt: s.createdAt.toISOString(),
    ...(s.lastUsedAt ? { lastUsedAt: s.lastUsedAt.toISOString() } : {}),
    ...(s.timeoutMs !== undefined ? { timeoutMs: s.timeoutMs } : {}),
    ...(s.expiresAt ? { expiresAt: s.expiresAt.toISOString() } : {}),
    ...(s.idleTimeoutMs !== undefined ? { idleTimeoutMs: s.idleTimeoutMs } : {}),
    ...(s.onExpiry ? { onExpiry: s.onExpiry } : {}),
    ...(s.error ? { error: s.error } : {}),
    ...(s.archivePath ? { archivePath: s.archivePath } : {}),
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
