/** The portable agent bundle: a pinned Node.js, its libraries and loader, tetherd as ES modules with their compile cache. */

export { ESM_REQUIRE_BANNER } from "./agent-script.js";
export {
  type BuildBundleOptions,
  type BuiltBundle,
  buildBundle,
  compileCacheFiles,
  NotABundleDirectoryError,
} from "./build.js";
export { bundleCommand } from "./command.js";
export { type BundleFile, contentHash, describeEntries } from "./hash.js";
export { HOST_TETHERD, writeHostAgent } from "./host-agent.js";
export { AGENT_CONTAINER_PORT, agentCommand, BUNDLE_NODE_FLAGS, DEFAULT_MOUNT_POINT, LOADER_NAME } from "./layout.js";
export { MissingLibraryError } from "./libraries.js";
export { bundleDirFor, defaultBundleRoot } from "./location.js";
export { type BundleManifest, MANIFEST_FILE, readManifest, VERSION_FILE } from "./manifest.js";
export { markBundleUsed, type PruneBundlesOptions, type PruneBundlesReport, pruneBundles } from "./prune.js";
export { ensureNodeRuntime, NODE_RUNTIME, runtimeDir } from "./runtime.js";
export { verifyBundle } from "./verify.js";
