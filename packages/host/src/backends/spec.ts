import type * as z from "zod/mini";
import { InvalidSandboxSpecError } from "../errors.js";
import type { SandboxSpec } from "./backend.js";

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 };

/** "512m" -> bytes; numbers pass through. Docker's units: b, k, m, g (powers of 1024). */
export function parseBytes(value: number | string): number {
  if (typeof value === "number") return value;
  const match = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!match) throw new InvalidSandboxSpecError(`memory ${JSON.stringify(value)}: expected bytes or e.g. 512m, 2g`);
  return Math.floor(Number(match[1]) * UNITS[match[2].toLowerCase()]);
}

/** The schema and zod load with the first spec to check (see spec-schema.ts). */
let schema: Promise<typeof import("./spec-schema.js")> | undefined;

/** A validated spec: memory in bytes, defaults filled in. */
export type ValidSpec = Omit<
  z.output<typeof import("./spec-schema.js")["specSchema"]>,
  "network" | "runCommand" | "labels" | "env" | "mounts"
> & {
  network: "none" | "bridge";
  runCommand: boolean;
  labels: Record<string, string>;
  env: Record<string, string>;
  mounts: NonNullable<SandboxSpec["mounts"]>;
};

/** Validates a spec at the edge; InvalidSandboxSpecError says every problem at once. */
export async function validateSpec(spec: SandboxSpec): Promise<ValidSpec> {
  schema ??= import("./spec-schema.js");
  const { specSchema, prettifyError } = await schema;
  const parsed = specSchema.safeParse(spec);
  if (!parsed.success) throw new InvalidSandboxSpecError(`invalid sandbox spec: ${prettifyError(parsed.error)}`);
  const s = parsed.data;
  return {
    ...s,
    network: s.network ?? "none",
    runCommand: s.runCommand ?? true,
    labels: s.labels ?? {},
    env: s.env ?? {},
    mounts: s.mounts ?? [],
  };
}
