import { Sandboxes, SandboxNotRunningError } from "@tether/host";
import type { Agent } from "@tether/sdk";

let shared: Sandboxes | undefined;

/** The host's sandboxes (Docker, under TETHER_HOME), made on first use. */
export function sandboxes(): Sandboxes {
  shared ??= new Sandboxes();
  return shared;
}

/** Connects to a running sandbox's agent; the error names the sandbox when it is missing, stopped or broken. */
export async function connectSandbox(id: string, user?: string): Promise<Agent> {
  try {
    return await sandboxes().connect(id, { user });
  } catch (err) {
    // A sandbox in state error says why (e.g. its container was removed behind our back).
    if (err instanceof SandboxNotRunningError && err.state === "error") {
      const info = await sandboxes()
        .get(id)
        .catch(() => undefined);
      if (info?.error)
        throw new Error(`sandbox ${err.id} cannot be used: ${info.error} (tether rm ${err.id} clears it)`);
    }
    throw err;
  }
}

/** Writes a one-line progress note on stderr, only when stderr is a terminal. */
export function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`tether: ${text}\n`);
}
