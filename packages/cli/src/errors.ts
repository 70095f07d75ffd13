import { TetherError } from "@tether/sdk";

/** Base of the errors tether's commands throw on purpose; under the SDK's TetherError, as the host's are. */
export class TetherCliError extends TetherError {}

/** Names given on the command line that match nothing of their kind (keys, templates); nothing was changed. */
export class UnknownNamesError extends TetherCliError {
  constructor(
    readonly kind: string,
    readonly names: readonly string[],
  ) {
    super(`no ${kind} ${names.map((n) => JSON.stringify(n)).join(", ")}`);
  }
}

/** `tether rm` without -f of a sandbox that still runs (or is paused). */
export class SandboxInUseError extends TetherCliError {
  constructor(
    readonly id: string,
    readonly state: string,
  ) {
    super(`sandbox ${id} is ${state}: stop it first, or use rm -f`);
  }
}

/** A sandbox in state error, with why it cannot be used. */
export class SandboxFailedError extends TetherCliError {
  constructor(
    readonly id: string,
    readonly reason: string,
  ) {
    super(`sandbox ${id} cannot be used: ${reason} (tether rm ${id} clears it)`);
  }
}

/** The sandbox's image has none of the shells `tether shell` looked for. */
export class NoShellError extends TetherCliError {
  constructor(
    readonly id: string,
    readonly shells: readonly string[],
  ) {
    super(
      `sandbox ${id} has no shell (no ${shells.join(" or ")} in its image): run a program with tether exec ${id} -- PROGRAM`,
    );
  }
}

/** `tether forward` cannot listen on its local port (taken, or not ours to take). */
export class ListenError extends TetherCliError {
  constructor(
    readonly port: number,
    cause: Error,
  ) {
    super(`cannot listen on 127.0.0.1:${port}: ${cause.message}`, { cause });
  }
}

/** What a command or option cannot do through `--server` (TETHER_SERVER): a server's templates and API fix it. */
export class NotThroughServerError extends TetherCliError {}
