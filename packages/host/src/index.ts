/** @tether/host: sandboxes from any image, behind one backend interface. */

export { type AgentActivity, agentActivity } from "./agent-activity.js";
export { agentAnswersHealth } from "./agent-health.js";
export {
  BACKEND_KINDS,
  type BackendKind,
  type BackendStatus,
  bwrapStatus,
  dockerStatus,
  embeddedBackendKind,
  ISOLATION,
  localStatus,
  vmStatus,
} from "./backends/availability.js";
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
  SandboxStats,
  StopOptions,
} from "./backends/backend.js";
export {
  LABEL_HOME,
  LABEL_MANAGED_BY,
  LABEL_SANDBOX,
  LIFETIME_STATES,
  MANAGED_BY,
  SANDBOX_STATES,
} from "./backends/backend.js";
export { BwrapBackend, type BwrapBackendOptions, findBwrap, probeBwrap } from "./backends/bwrap/bwrap-backend.js";
export { parseBytes } from "./backends/bytes.js";
export { DockerBackend, type DockerBackendOptions } from "./backends/docker/docker-backend.js";
export { detectEngine, type Engine, type EngineKind, type EngineStrategy } from "./backends/docker/engine.js";
export { type LogLine, logLines } from "./backends/docker/log-stream.js";
export {
  BACKENDS,
  type BackendKindEntry,
  type BackendOptions,
  backendStatuses,
  isBackendKind,
} from "./backends/kinds.js";
export { LocalBackend } from "./backends/local/local-backend.js";
export {
  HOST_IMAGE,
  type LaunchStrategy,
  ProcessBackend,
  type ProcessBackendOptions,
} from "./backends/process/process-backend.js";
export { QmpClient, QmpCommandError, QmpConnectionError } from "./backends/vm/qmp.js";
export {
  removeBridge,
  TAP_BRIDGE,
  TapNetworkError,
  type TapSupport,
  tapName,
  tapSupport,
} from "./backends/vm/tap-network.js";
export { VmBackend, type VmBackendOptions, VsockUnavailableError } from "./backends/vm/vm-backend.js";
export { findVmTools, type VmTools, VmToolsMissingError } from "./backends/vm/vm-tools.js";
export { type BuildImageOptions, buildImage } from "./build-image.js";
export { UnsafeEntryError } from "./copy/local-dir.js";
export { SandboxCopy, type SandboxCopyOptions } from "./copy/sandbox-copy.js";
export { SharedTransferDir, TransferRefusedError } from "./copy/shared-dir.js";
export {
  BackendUnavailableError,
  EngineUnavailableError,
  HomeUnusableError,
  ImageNotFoundError,
  ImagePrepareError,
  InvalidCopyError,
  InvalidSandboxSpecError,
  RegistryDamagedError,
  RegistryError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxStartError,
  TetherHostError,
} from "./errors.js";
export { makeHome, tetherHome } from "./home.js";
export type { Expired } from "./lifecycle/expiry.js";
export { DEFAULT_GC_AGE_MS, type GcOptions, type GcReport } from "./lifecycle/gc.js";
export { INTERRUPTED_CREATE, type ReconcileReport, VANISHED } from "./lifecycle/reconcile.js";
export { compileCacheDigest, type PreparedImage, preparedTag, prepareImage } from "./prepare-image.js";
export { type ProcessIdentity, processIdentity } from "./process-identity.js";
export {
  type ExpiryAction,
  REGISTRY_FILE,
  type RecordFilter,
  type RecordState,
  Registry,
  type RegistryRepair,
  registryHealth,
  repairRegistry,
  type SandboxEvent,
  type SandboxRecord,
} from "./registry/registry.js";
export { removeHome, SandboxDir } from "./sandbox-dir.js";
export {
  type CreateOptions,
  type ExpiryLoop,
  type MaintenanceReport,
  Sandboxes,
  type SandboxesOptions,
  type SandboxFilter,
  startExpiryLoop,
  type TimeoutOptions,
} from "./sandboxes.js";
