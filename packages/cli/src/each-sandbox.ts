import { EXIT } from "./options.js";

/**
 * Runs `act` on each sandbox in turn, printing each id done (as docker does); a failure is
 * reported and the rest still run, and the exit code is then 125.
 */
export async function forEachSandbox(ids: string[], act: (id: string) => Promise<unknown>): Promise<void> {
  for (const id of ids) {
    try {
      await act(id);
      process.stdout.write(`${id}\n`);
    } catch (err) {
      process.stderr.write(`tether: ${err instanceof Error ? err.message : err}\n`);
      process.exitCode = EXIT.failure;
    }
  }
}
