import type * as z from "zod/mini";
import { InvalidSandboxSpecError } from "../errors.js";
import type { SandboxSpec } from "./backend.js";

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
