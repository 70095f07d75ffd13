export {
  Sandbox,
  type SandboxConnectOptions,
  type SandboxCreateOptions,
  type SandboxInfo,
  type SandboxListOptions,
  type SandboxPage,
  type SandboxState,
  type ServerOptions,
} from "./sandbox.js";
export { type ApiAnswer, Tether, type TetherOptions } from "./tether.js";
