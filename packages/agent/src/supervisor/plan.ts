import type { AgentContext } from "../context.js";
import { childCredentials } from "../process/credentials.js";
import { inheritedEnv } from "../process/inherited-env.js";
import type { SupervisedSpec } from "./supervised-command.js";

/**
 * Decides how the sandbox's own command runs: with the container's environment (minus
 * the agent's runtime variables, plus what the host handed on for children), in the
 * agent's working directory (the container's), as the agent's default user.
 */
export async function planSupervisedCommand(ctx: AgentContext, argv: readonly string[]): Promise<SupervisedSpec> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("the supervised command is empty");
  const user = ctx.users.resolve(ctx.state.defaultUser);
  const creds = await childCredentials(ctx.users, user, false);
  const env = inheritedEnv(process.env);
  if (creds.kind !== "inherit") Object.assign(env, { HOME: user.home, USER: user.name, LOGNAME: user.name });
  const spec: SupervisedSpec = { file: cmd, args, argv: [...argv], env, cwd: process.cwd() };
  if (creds.kind === "ids") spec.ids = { uid: creds.uid, gid: creds.gid, groups: creds.groups };
  if (creds.kind === "exec-as") {
    spec.file = creds.file;
    spec.args = [...creds.args, cmd, ...args];
  }
  return spec;
}
