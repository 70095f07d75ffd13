import { z } from "../zod.js";

// The frames' schemas: frames.ts loads this module (and zod) on a session's first frame.

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const data = z.string().check(z.regex(BASE64, "data must be base64"));
const noNul = (what: string) => z.string().check(z.refine((s) => !s.includes("\0"), `${what} must not contain NUL`));

/** A session's first frame (or the one after auth). */
export const firstFrame = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("exec"),
    argv: z.array(noNul("argv")).check(z.minLength(1, "argv is empty")),
    env: z.optional(
      z.record(
        z.string().check(z.regex(/^[^=\0]+$/, "env names must be non-empty, without = or NUL")),
        noNul("env values"),
      ),
    ),
  }),
  z.object({ type: z.literal("reseed"), data, regen_machine_id: z.optional(z.boolean()) }),
  z.object({ type: z.literal("auth"), token: z.string() }),
]);

/** A frame after exec. */
export const inputFrame = z.discriminatedUnion("type", [
  z.object({ type: z.literal("stdin"), data }),
  z.object({ type: z.literal("stdin_close") }),
]);

/** zod's report of what is wrong, on one line. */
export function prettify(error: z.core.$ZodError): string {
  return z.prettifyError(error).replace(/\n+/g, "; ");
}
