import { rmSync } from "node:fs";
import type { Sandboxes } from "@tether/host";

/** Removes every sandbox of a bench's own TETHER_HOME (what a failed create left too), closes it, then deletes the home. */
export async function removeHome(sandboxes: Sandboxes): Promise<void> {
  for (const s of await sandboxes.list().catch(() => [])) await sandboxes.remove(s.id).catch(() => {});
  sandboxes.close();
  rmSync(sandboxes.home, { recursive: true, force: true });
}
