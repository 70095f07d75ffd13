/** tetherd: the agent inside every sandbox. */

export { COCOON_DEFAULT_VSOCK_PORT } from "@tether/protocol/constants";
export { type AgentOptions, type RunningAgent, startAgent } from "./agent.js";
export {
  type AgentProcess,
  isGoneOrZombie,
  sampleMax,
  spawnAgentProcess,
  waitGone,
} from "./agent-process.js";
export { type UnixUser, UnknownUserError, UserDirectory } from "./auth/users.js";
export {
  CocoonError,
  type CocoonRequest,
  type CocoonTarget,
  runCocoonClient,
  STDIN_CHUNK_BYTES,
} from "./cocoon/client.js";
/** tetherd's command line, for `tether agent`. */
export { main } from "./main.js";
export { AGENT_PACKAGE_DIR, TETHERD_BIN } from "./paths.js";
