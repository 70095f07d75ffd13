import { Sandboxes } from "@tether/host";
import type { Agent } from "@tether/sdk";

let shared: Sandboxes | undefined;

/** The host's sandboxes (Docker, under TETHER_HOME), made on first use. */
export function sandboxes(): Sandboxes {
  shared ??= new Sandboxes();
  return shared;
}

/** Connects to a running sandbox's agent; the error names the sandbox when it is missing or stopped. */
export function connectSandbox(id: string, user?: string): Promise<Agent> {
  return sandboxes().connect(id, { user });
}

/** Writes a one-line progress note on stderr, only when stderr is a terminal. */
export function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`tether: ${text}\n`);
}
