/** @tether/host: sandboxes from any image, behind one backend interface. */
export { agentAnswersHealth } from "./agent-health.js";
export type {
  AgentEndpoint,
  BindMount,
  ListFilter,
  LogChunk,
  LogOptions,
  NetworkMode,
  SandboxBackend,
  SandboxInfo,
  SandboxSpec,
  SandboxState,
  StopOptions,
} from "./backends/backend.js";
export { LABEL_MANAGED_BY, LABEL_SANDBOX, MANAGED_BY } from "./backends/backend.js";
export { DockerBackend, type DockerBackendOptions } from "./backends/docker/docker-backend.js";
export { detectEngine, type Engine, type EngineKind, type EngineStrategy } from "./backends/docker/engine.js";
export { parseBytes } from "./backends/spec.js";
export {
  EngineUnavailableError,
  ImageNotFoundError,
  ImagePrepareError,
  InvalidSandboxSpecError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxStartError,
  TetherHostError,
} from "./errors.js";
export { tetherHome } from "./home.js";
export { type PreparedImage, preparedTag, prepareImage } from "./prepare-image.js";
export { SandboxDir } from "./sandbox-dir.js";
export { type CreateOptions, Sandboxes, type SandboxesOptions } from "./sandboxes.js";
