import type Docker from "dockerode";
import {
  BACKEND_KINDS,
  type BackendKind,
  type BackendStatus,
  bwrapStatus,
  dockerStatus,
  localStatus,
  vmStatus,
} from "./availability.js";
import type { SandboxBackend } from "./backend.js";
import { BwrapBackend } from "./bwrap/bwrap-backend.js";
import { DockerBackend, type DockerBackendOptions } from "./docker/docker-backend.js";
import { LocalBackend } from "./local/local-backend.js";
import { VmBackend, type VmBackendOptions } from "./vm/vm-backend.js";

/**
 * What a backend is made with: its TETHER_HOME, the engine options Docker's takes (home
 * included), and the vm backend's own (its cache of disks); vm takes the engine and the
 * agent bundle from `docker`'s, since it boots the same images with the same agent.
 */
export interface BackendOptions {
  home: string;
  docker: DockerBackendOptions;
  vm?: Pick<VmBackendOptions, "cacheDir">;
}

/** One kind of backend: what its sandboxes come from, how to make one, whether it works here. */
export interface BackendKindEntry {
  /** Whether its sandboxes come from an image; the others run on this machine's own root. */
  image: boolean;
  make(options: BackendOptions): SandboxBackend;
  status(options: { docker?: Docker }): Promise<BackendStatus>;
}

/** Every backend kind: the table `Sandboxes` makes its backends from and `tether doctor` probes. */
export const BACKENDS: Readonly<Record<BackendKind, BackendKindEntry>> = {
  docker: {
    image: true,
    make: (options) => new DockerBackend(options.docker),
    status: (options) => dockerStatus(options.docker),
  },
  bwrap: {
    image: false,
    make: (options) => new BwrapBackend({ home: options.home }),
    status: () => bwrapStatus(),
  },
  local: {
    image: false,
    make: (options) => new LocalBackend({ home: options.home }),
    status: async () => localStatus(),
  },
  // Boots an image too: the engine exports its filesystem into the VM's disk.
  vm: {
    image: true,
    make: (options) =>
      new VmBackend({
        home: options.home,
        docker: options.docker.docker,
        bundle: options.docker.bundle,
        bundleRoot: options.docker.bundleRoot,
        ...options.vm,
      }),
    status: (options) => vmStatus({ docker: options.docker }),
  },
};

/** Whether `kind` names a backend Tether has. */
export function isBackendKind(kind: string): kind is BackendKind {
  return Object.hasOwn(BACKENDS, kind);
}

/** Every backend's status, for `tether doctor`. */
export function backendStatuses(options: { docker?: Docker } = {}): Promise<BackendStatus[]> {
  return Promise.all(BACKEND_KINDS.map((kind) => BACKENDS[kind].status(options)));
}
