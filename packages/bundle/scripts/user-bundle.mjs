// Part of `npm run build`: this checkout's agent bundle, prepared in the user's cache
// (~/.cache/tether/bundle). A TETHER_HOME without it (a fresh one, the tests' roots) then links
// it instead of building its own at its first create: fetching the pinned Node runtime with
// npm pack, esbuild, a compile cache, tens of seconds on a loaded host while every create
// started meanwhile waits. Where it cannot be prepared (offline, no writable cache), the
// build goes on and the first create builds it, as before.

import { existsSync } from "node:fs";
import { buildBundle } from "../dist/src/index.js";
import { userBundleRoot } from "../dist/src/location.js";

// Only containers and VMs mount the bundle, and both take their images from an engine: on a
// machine with none (a newcomer's, whose first run is the embedded default) it would be a
// download and a build for nothing.
const engineSockets = [
  "/var/run/docker.sock",
  "/run/podman/podman.sock",
  `${process.env.XDG_RUNTIME_DIR ?? "/nonexistent"}/podman/podman.sock`,
];
const dockerHost = process.env.DOCKER_HOST;
const engine = dockerHost
  ? !dockerHost.startsWith("unix://") || existsSync(dockerHost.slice("unix://".length))
  : engineSockets.some((socket) => existsSync(socket));
const root = userBundleRoot();
if (!engine) {
  process.stderr.write(`tether: no container engine here: the agent bundle is built at the first create, not now\n`);
  process.exit(0);
}
try {
  const bundle = await buildBundle({ root });
  if (!bundle.reused) process.stderr.write(`tether: prepared the agent bundle in ${bundle.dir}\n`);
} catch (err) {
  process.stderr.write(
    `tether: the agent bundle was not prepared in ${root} (${err instanceof Error ? err.message : err}); the first create will build it\n`,
  );
}
