import path from "node:path";
import type { z as Zod } from "zod";
import { InvalidSandboxSpecError } from "../errors.js";
import { isValidSandboxId } from "../sandbox-dir.js";
import { RESERVED_LABEL_PREFIX, type SandboxSpec } from "./backend.js";

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 };

/** "512m" -> bytes; numbers pass through. Docker's units: b, k, m, g (powers of 1024). */
export function parseBytes(value: number | string): number {
  if (typeof value === "number") return value;
  const match = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!match) throw new InvalidSandboxSpecError(`memory ${JSON.stringify(value)}: expected bytes or e.g. 512m, 2g`);
  return Math.floor(Number(match[1]) * UNITS[match[2].toLowerCase()]);
}

/** The spec's schema, made with the zod that `loadSchema` imports. */
function specSchema(z: typeof Zod) {
  const absolutePath = z.string().refine((p) => path.isAbsolute(p), "must be an absolute path");
  return z.strictObject({
    image: z.string().min(1),
    id: z
      .string()
      .refine(isValidSandboxId, "lowercase letters, digits, '_', '.', '-' (at most 64, first a letter or digit)")
      .optional(),
    name: z
      .string()
      .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, "letters, digits, '_', '.', '-' (first a letter or digit)")
      .optional(),
    labels: z
      .record(
        z.string().refine((k) => k.length > 0 && !k.startsWith(RESERVED_LABEL_PREFIX), "labels tether.* are reserved"),
        z.string(),
      )
      .optional(),
    env: z
      .record(
        z.string().regex(/^[^=\0]+$/, "env names are non-empty and have no '=' or NUL"),
        z.string().refine((v) => !v.includes("\0"), "no NUL"),
      )
      .optional(),
    workdir: absolutePath.optional(),
    user: z.string().min(1).optional(),
    cpus: z.number().positive().optional(),
    memory: z
      .union([z.number().int().positive(), z.string().min(1)])
      .transform((v, ctx) => {
        try {
          return parseBytes(v);
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message });
          return z.NEVER;
        }
      })
      .refine((n) => n >= 6 << 20, "at least 6 MiB")
      .optional(),
    pidsLimit: z.number().int().positive().optional(),
    network: z.enum(["none", "bridge"]).optional(),
    runtime: z
      .string()
      .regex(/^[a-zA-Z0-9_.-]+$/)
      .optional(),
    readOnlyRootfs: z.boolean().optional(),
    mounts: z
      .array(z.strictObject({ source: absolutePath, target: absolutePath, readOnly: z.boolean().optional() }))
      .optional(),
    command: z.array(z.string()).min(1).optional(),
    runCommand: z.boolean().optional(),
    readyTimeoutMs: z.number().int().positive().optional(),
  });
}

type SpecSchema = ReturnType<typeof specSchema>;

let schema: Promise<{ z: typeof Zod; Spec: SpecSchema }> | undefined;

/** zod loads with the first spec to check: about 30 ms that most `tether` commands never need. */
function loadSchema(): Promise<{ z: typeof Zod; Spec: SpecSchema }> {
  schema ??= import("zod").then(({ z }) => ({ z, Spec: specSchema(z) }));
  return schema;
}

/** A validated spec: memory in bytes, defaults filled in. */
export type ValidSpec = Omit<Zod.output<SpecSchema>, "network" | "runCommand" | "labels" | "env" | "mounts"> & {
  network: "none" | "bridge";
  runCommand: boolean;
  labels: Record<string, string>;
  env: Record<string, string>;
  mounts: NonNullable<SandboxSpec["mounts"]>;
};

/** Validates a spec at the edge; InvalidSandboxSpecError says every problem at once. */
export async function validateSpec(spec: SandboxSpec): Promise<ValidSpec> {
  const { z, Spec } = await loadSchema();
  const parsed = Spec.safeParse(spec);
  if (!parsed.success) throw new InvalidSandboxSpecError(`invalid sandbox spec: ${z.prettifyError(parsed.error)}`);
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
