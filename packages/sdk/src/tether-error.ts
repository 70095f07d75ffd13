/**
 * Base class of every error the SDK throws on purpose, and of the host's and the CLI's.
 * A module of its own (`@tether/sdk/tether-error`) so that those packages' lightest
 * processes (the host's sandbox supervisor) can extend it without loading the SDK.
 */
export class TetherError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
