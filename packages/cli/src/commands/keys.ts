import { tetherHome } from "@tether/host";
import { Command } from "commander";
import { UnknownNamesError } from "../errors.js";
import { formatTable } from "../table.js";

async function apiKeys() {
  const { ApiKeys, openServerDatabase } = await import("@tether/server");
  const db = openServerDatabase(tetherHome());
  return { keys: new ApiKeys(db), close: () => db.close() };
}

/** `tether keys create|ls|rm`: the API keys `tether serve` accepts, each in a team. */
export function keysCommand(): Command {
  const keys = new Command("keys").summary("API keys for tether serve (create, ls, rm)");
  keys
    .command("create")
    .summary("mint a key; it is printed once and only its hash is kept")
    .option("--team <team>", "the key's team: it sees and touches only its team's sandboxes", "default")
    .option("--name <name>", "a name to tell the key apart in `tether keys ls`")
    .action(async (flags: { team: string; name?: string }) => {
      const { keys, close } = await apiKeys();
      try {
        const made = keys.create({ team: flags.team, name: flags.name });
        process.stdout.write(`${made.key}\n`);
        if (process.stderr.isTTY)
          process.stderr.write(`tether: key ${made.name} (team ${made.team}); it is not shown again\n`);
      } finally {
        close();
      }
    });
  keys
    .command("ls")
    .summary("list keys (never the keys themselves)")
    .option("--json", "print a JSON array")
    .action(async (flags: { json?: boolean }) => {
      const { keys, close } = await apiKeys();
      try {
        const list = keys.list();
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        const rows = [
          ["ID", "NAME", "TEAM", "PREFIX", "CREATED"],
          ...list.map((k) => [k.id, k.name, k.team, `${k.prefix}...`, k.createdAt.toISOString()]),
        ];
        process.stdout.write(`${formatTable(rows)}\n`);
      } finally {
        close();
      }
    });
  keys
    .command("rm")
    .summary("revoke keys")
    .argument("<keys...>", "key ids, names or prefixes")
    .action(async (which: string[]) => {
      const { keys, close } = await apiKeys();
      try {
        const missing = which.filter((w) => !keys.remove(w));
        if (missing.length > 0) throw new UnknownNamesError("key", missing);
      } finally {
        close();
      }
    });
  return keys;
}
