import { TetherError } from "@tether/sdk/tether-error";

/**
 * Base of every error @tether/host throws on purpose; `name` says which. Under the SDK's
 * TetherError, so one `instanceof TetherError` tells the SDK's, the host's and the CLI's
 * errors from a bug.
 */
export class TetherHostError extends TetherError {}

/** No sandbox with this id (or name) exists: never created, removed, or removed behind our back. */
export class SandboxNotFoundError extends TetherHostError {
  constructor(readonly id: string) {
    super(`no sandbox ${JSON.stringify(id)}: it does not exist or was removed`);
  }
}

/** The engine has no image by this name; images are never pulled implicitly. */
export class ImageNotFoundError extends TetherHostError {
  constructor(
    readonly image: string,
    engine = "the container engine",
  ) {
    super(`image ${JSON.stringify(image)} not found in ${engine} (pull or build it first)`);
  }
}

/** The sandbox's container died, or its agent never answered, before the sandbox was ready. */
export class SandboxStartError extends TetherHostError {
  constructor(
    readonly id: string,
    readonly image: string,
    readonly reason: string,
    /** The container's last log lines (stdout and stderr, in order). */
    readonly logLines: string[],
    readonly exitCode?: number,
  ) {
    const tail =
      logLines.length > 0
        ? `; its last log lines:\n${logLines.map((l) => `  ${l}`).join("\n")}`
        : "; it logged nothing";
    super(`sandbox ${id} (image ${image}) did not start: ${reason}${tail}`);
  }
}

/** The container engine cannot be reached (not running, wrong DOCKER_HOST, no permission). */
export class EngineUnavailableError extends TetherHostError {
  constructor(
    readonly endpoint: string,
    cause: unknown,
  ) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`cannot reach the container engine at ${endpoint}: ${why}`, { cause });
  }
}

/** A copy that cannot be done as asked (a directory to stdout, stdin into a directory, a socket); nothing was copied. */
export class InvalidCopyError extends TetherHostError {}

/** A sandbox spec that cannot be honoured; nothing was created. */
export class InvalidSandboxSpecError extends TetherHostError {}

/** The sandbox exists but is not running, so its agent cannot be reached. */
export class SandboxNotRunningError extends TetherHostError {
  constructor(
    readonly id: string,
    readonly state: string,
  ) {
    super(`sandbox ${id} is ${state}, not running: start it first`);
  }
}

/** Building a derived image (user image + agent bundle) failed. */
export class ImagePrepareError extends TetherHostError {}

/** TETHER_HOME cannot be made, or is not a directory this user may write. */
export class HomeUnusableError extends TetherHostError {
  constructor(
    readonly home: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`TETHER_HOME ${home} cannot be used: ${reason} (set TETHER_HOME to a directory you may write)`, options);
  }
}

/** The registry database cannot be opened, migrated or written. */
export class RegistryError extends TetherHostError {}

/** The registry file is not a database any more (torn write, disk fault, overwritten). */
export class RegistryDamagedError extends RegistryError {
  constructor(
    readonly file: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(
      `the registry ${file} is damaged (${reason}): \`tether doctor --repair\` sets it aside, ` +
        "makes a new one and adopts the sandboxes that still exist",
      options,
    );
  }
}

/** A backend asked for by name cannot run sandboxes on this machine (see `tether doctor`). */
export class BackendUnavailableError extends TetherHostError {
  constructor(
    readonly backend: string,
    readonly reason: string,
  ) {
    super(`backend ${backend} is not available here: ${reason}`);
  }
}
