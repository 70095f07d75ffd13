/** tetherd: the agent inside every sandbox. */
export { type AgentOptions, type RunningAgent, startAgent } from "./agent.js";
export { type UnixUser, UnknownUserError, UserDirectory } from "./auth/users.js";
/** tetherd's command line, for `tether agent`. */
export { main } from "./main.js";
