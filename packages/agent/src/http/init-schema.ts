import * as z from "zod/mini";
import en from "zod/v4/locales/en.js";

// The /init body's schema, in zod's small build imported by name (its English messages are
// the full build's): env.ts loads this module on the first /init, which a VM's every resume
// and fork makes, so that call parses tens of KB instead of the full zod's 760.
z.config(en());

export const initSchema = z.object({
  envVars: z.optional(z.record(z.string(), z.string())),
  accessToken: z.optional(z.string().check(z.minLength(1))),
  defaultUser: z.optional(z.string().check(z.minLength(1))),
  defaultWorkdir: z.optional(z.string().check(z.minLength(1))),
  timestamp: z.optional(z.string()),
});

export { prettifyError } from "zod/mini";
