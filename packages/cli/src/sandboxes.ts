import { type SandboxCopy, Sandboxes, SandboxNotRunningError } from "@tether/host";
import type { Agent } from "@tether/sdk";
import { NotThroughServerError, SandboxFailedError } from "./errors.js";
import { place } from "./place.js";

let shared: Sandboxes | undefined;
/** The command run with --server: this machine's sandboxes are not its to touch. */
let remoteCommand: string | undefined;

/** After this, `sandboxes()` refuses: the command works through a server (see place.ts). */
export function refuseLocalSandboxes(command: string): void {
  remoteCommand = command;
}

/** The host's sandboxes (Docker, under TETHER_HOME), made on first use. */
export function sandboxes(): Sandboxes {
  if (remoteCommand !== undefined) {
    throw new NotThroughServerError(
      `tether ${remoteCommand} works on this machine's sandboxes only, not through --server (TETHER_SERVER): ` +
        "through a server: ls, create, exec, cp, rm, pause, unpause",
    );
  }
  if (!shared) {
    shared = new Sandboxes();
    const readOnly = shared.registry?.readOnly;
    if (readOnly) {
      process.stderr.write(
        `tether: ${readOnly}: the registry is read as it is, not reconciled, and changes cannot be recorded\n`,
      );
    }
  }
  return shared;
}

/** Connects to a running sandbox's agent; the error names the sandbox when it is missing, stopped or broken. */
export function connectSandbox(id: string, user?: string): Promise<Agent> {
  return explained(id, () => place().connect(id, user === undefined ? {} : { user }));
}

/** What `tether cp` copies with (see Sandboxes.copier), with connectSandbox's errors. */
export function sandboxCopier(id: string): Promise<SandboxCopy> {
  return explained(id, () => place().copier(id));
}

/** Runs `connect`; a sandbox in state error says why it cannot be used. */
async function explained<T>(id: string, connect: () => Promise<T>): Promise<T> {
  try {
    return await connect();
  } catch (err) {
    // A sandbox in state error says why (e.g. its container was removed behind our back).
    if (err instanceof SandboxNotRunningError && err.state === "error") {
      const info = await sandboxes()
        .get(id)
        .catch(() => undefined);
      if (info?.error) throw new SandboxFailedError(err.id, info.error);
    }
    throw err;
  }
}

/** Writes a one-line progress note on stderr, only when stderr is a terminal. */
export function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`tether: ${text}\n`);
}
