// Part of `npm run build`: tetherd bundled for the host's Node (see src/host-agent.ts).
import { writeHostAgent } from "../dist/src/index.js";

await writeHostAgent();
