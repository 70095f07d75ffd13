import * as z from "zod/mini";
import en from "zod/v4/locales/en.js";

// zod's small build, imported by name, with the full build's English messages. Loaded only
// with the schemas that need it (the /init body's, a cocoon session's frames): an agent's
// first /init, which a VM's every resume and fork makes, parses tens of KB instead of the
// full zod's 760.
z.config(en());

export { prettifyError } from "zod/mini";
export { z };
