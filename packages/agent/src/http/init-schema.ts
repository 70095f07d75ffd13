import { z } from "../zod.js";

// The /init body's schema: env.ts loads this module (and zod) on the first /init.

export const initSchema = z.object({
  envVars: z.optional(z.record(z.string(), z.string())),
  accessToken: z.optional(z.string().check(z.minLength(1))),
  defaultUser: z.optional(z.string().check(z.minLength(1))),
  defaultWorkdir: z.optional(z.string().check(z.minLength(1))),
  timestamp: z.optional(z.string()),
});

export { prettifyError } from "../zod.js";
