import type { SandboxBackend } from "../backends/backend.js";
import type { Registry } from "../registry/registry.js";

/** What reconcile, expiry and gc work on: one TETHER_HOME's registry and backends. */
export interface LifecycleContext {
  home: string;
  registry: Registry;
  /** The backend of a kind ("docker", "bwrap", "local"), made on first use. */
  backend(kind: string): SandboxBackend;
  /** The kinds to reconcile: every backend that may hold sandboxes of this home. */
  kinds(): string[];
}

/** An error's message, for records and reports. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
