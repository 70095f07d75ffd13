import path from "node:path";
import * as z from "zod/mini";
import en from "zod/v4/locales/en.js";
import { isValidSandboxId } from "../sandbox-dir.js";
import { RESERVED_LABEL_PREFIX } from "./backend.js";
import { parseBytes } from "./bytes.js";

// The spec's schema in zod's small build, imported by name: most `tether` commands never check
// a spec, so spec.ts imports this module on the first one. The full build (757 KB bundled)
// and every locale of zod (64) were parsed at each `tether create`; this is what a create
// needs of zod, with its English messages (the full build's, word for word).
z.config(en());

export { prettifyError } from "zod/mini";

const absolutePath = z.string().check(z.refine((p) => path.isAbsolute(p), "must be an absolute path"));
const positiveInt = z.int().check(z.positive());

/** The spec's schema. */
export const specSchema = z.strictObject({
  image: z.string().check(z.minLength(1)),
  id: z.optional(
    z
      .string()
      .check(
        z.refine(isValidSandboxId, "lowercase letters, digits, '_', '.', '-' (at most 64, first a letter or digit)"),
      ),
  ),
  name: z.optional(
    z
      .string()
      .check(z.regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, "letters, digits, '_', '.', '-' (first a letter or digit)")),
  ),
  labels: z.optional(
    z.record(
      z
        .string()
        .check(z.refine((k) => k.length > 0 && !k.startsWith(RESERVED_LABEL_PREFIX), "labels tether.* are reserved")),
      z.string(),
    ),
  ),
  env: z.optional(
    z.record(
      z.string().check(z.regex(/^[^=\0]+$/, "env names are non-empty and have no '=' or NUL")),
      z.string().check(z.refine((v) => !v.includes("\0"), "no NUL")),
    ),
  ),
  workdir: z.optional(absolutePath),
  user: z.optional(z.string().check(z.minLength(1))),
  cpus: z.optional(z.number().check(z.positive())),
  memory: z.optional(
    z
      .pipe(
        z.union([positiveInt, z.string().check(z.minLength(1))]),
        z.transform((v, ctx) => {
          try {
            return parseBytes(v);
          } catch (err) {
            ctx.issues.push({ code: "custom", message: (err as Error).message, input: v });
            return z.NEVER;
          }
        }),
      )
      .check(z.refine((n) => n >= 6 << 20, "at least 6 MiB")),
  ),
  pidsLimit: z.optional(positiveInt),
  network: z.optional(z.enum(["none", "bridge"])),
  runtime: z.optional(z.string().check(z.regex(/^[a-zA-Z0-9_.-]+$/))),
  readOnlyRootfs: z.optional(z.boolean()),
  mounts: z.optional(
    z.array(z.strictObject({ source: absolutePath, target: absolutePath, readOnly: z.optional(z.boolean()) })),
  ),
  command: z.optional(z.array(z.string()).check(z.minLength(1))),
  runCommand: z.optional(z.boolean()),
  readyTimeoutMs: z.optional(positiveInt),
});
