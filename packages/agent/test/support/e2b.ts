import { Sandbox } from "e2b";
import type { TestAgent } from "./agent.js";

/**
 * The official e2b SDK pointed at a test agent. Debug mode skips E2B's control plane and
 * assumes envd 99.99.99, so every feature of the SDK is switched on.
 */
export async function e2bSandbox(t: TestAgent): Promise<Sandbox> {
  return Sandbox.create({ debug: true, sandboxUrl: t.url });
}
