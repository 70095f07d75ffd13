/**
 * Prefix under which a host hands an env var to the agent's children without the agent
 * itself seeing it: `TETHER_ENV_LD_PRELOAD=x` becomes `LD_PRELOAD=x` for children only.
 */
export const CHILD_ENV_PREFIX = "TETHER_ENV_";

/**
 * Names that configure the agent's own runtime rather than the sandbox: an image's
 * NODE_OPTIONS or LD_PRELOAD would break the bundled node, and TETHER_* are the agent's.
 */
function belongsToAgent(name: string): boolean {
  return name.startsWith("TETHER_") || name === "NODE_OPTIONS" || name.startsWith("LD_");
}

/**
 * The environment the sandbox's processes should see, made from the agent's own: every
 * variable but the agent's runtime ones, then each `TETHER_ENV_<NAME>` as `<NAME>`.
 */
export function inheritedEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !belongsToAgent(name)) out[name] = value;
  }
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || !name.startsWith(CHILD_ENV_PREFIX)) continue;
    const target = name.slice(CHILD_ENV_PREFIX.length);
    if (target) out[target] = value;
  }
  return out;
}
