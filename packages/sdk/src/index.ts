/** @tether/sdk: a TypeScript client for one Tether agent (tetherd). */
export { Agent, connect } from "./agent.js";
export {
  type AttachOptions,
  CommandHandle,
  type CommandOptions,
  type CommandResult,
  type CommandSpec,
  Commands,
  type DroppedOutput,
  type ExitReasonName,
  type InputSource,
  type KillSignal,
  type OutputChunk,
  type OutputKind,
  type ProcessExit,
  type ProcessInfo,
  type SignalName,
  type StreamOffsets,
  shellExitCode,
} from "./commands/index.js";
export type { AgentTarget, ConnectionOptions } from "./connection.js";
export {
  AgentProtocolError,
  AgentUnavailableError,
  AlreadyExistsError,
  AuthenticationError,
  type CommandExitDetails,
  CommandExitError,
  ConnectionLostError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  PortUnreachableError,
  RateLimitError,
  ResourceExhaustedError,
  SandboxNotFoundError,
  ServerError,
  TetherError,
  TimeoutError,
  TransferUnavailableError,
} from "./errors.js";
export {
  type EntryInfo,
  type FileKind,
  type FileOptions,
  Files,
  type TransferredFile,
  type WriteData,
  type WriteInfo,
} from "./files/index.js";
export { type ListeningPort, type PortEvent, Ports } from "./ports/index.js";
export { Pty, PtyHandle, type PtyOptions, type PtySize } from "./pty/index.js";
export {
  Sandbox,
  type SandboxConnectOptions,
  type SandboxCreateOptions,
  type SandboxInfo,
  type SandboxListOptions,
  type SandboxPage,
  type SandboxState,
  type ServerOptions,
  Tether,
  type TetherOptions,
} from "./server/index.js";
export { type TunnelOptions, TunnelStream, type TunnelTarget } from "./tunnel/index.js";
export {
  type RepositorySpec,
  Workspace,
  type WorkspaceInitOptions,
  type WorkspaceInitResult,
  WorkspaceInitRun,
  type WorkspaceLogLine,
} from "./workspace/index.js";
