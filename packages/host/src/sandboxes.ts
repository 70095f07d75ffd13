import { type Agent, connect } from "@tether/sdk";
import type {
  ListFilter,
  LogChunk,
  LogOptions,
  SandboxBackend,
  SandboxInfo,
  SandboxSpec,
  StopOptions,
} from "./backends/backend.js";
import { DockerBackend, type DockerBackendOptions } from "./backends/docker/docker-backend.js";
import { SandboxNotRunningError, TetherHostError } from "./errors.js";

/** Everything `create` takes beside the image. */
export type CreateOptions = Omit<SandboxSpec, "image">;

export interface SandboxesOptions {
  /** The backend; default a DockerBackend made from `docker`. */
  backend?: SandboxBackend;
  docker?: DockerBackendOptions;
}

/**
 * The host's entry point: create sandboxes from images, find them again, and connect
 * to their agents. A thin layer over one backend; a registry will sit here later.
 */
export class Sandboxes {
  readonly backend: SandboxBackend;

  constructor(options: SandboxesOptions = {}) {
    this.backend = options.backend ?? new DockerBackend(options.docker);
  }

  /** Creates and starts a sandbox from `image`; resolves once its agent answers. */
  create(image: string, options: CreateOptions = {}): Promise<SandboxInfo> {
    return this.backend.create({ ...options, image });
  }

  /** The sandbox by id (or name); SandboxNotFoundError when it is gone. */
  get(id: string): Promise<SandboxInfo> {
    return this.backend.inspect(id);
  }

  list(filter?: ListFilter): Promise<SandboxInfo[]> {
    return this.backend.list(filter);
  }

  /** A client for the sandbox's agent, over its unix socket; the caller closes it. */
  async connect(id: string, options: { user?: string } = {}): Promise<Agent> {
    const info = await this.backend.inspect(id);
    if (info.state !== "running") throw new SandboxNotRunningError(info.id, info.state);
    if (!info.endpoint) {
      throw new TetherHostError(`sandbox ${info.id} has no host directory (its socket and token are gone)`);
    }
    return connect({ socket: info.endpoint.socket, accessToken: info.endpoint.accessToken, user: options.user });
  }

  start(id: string): Promise<SandboxInfo> {
    return this.backend.start(id);
  }

  stop(id: string, options?: StopOptions): Promise<void> {
    return this.backend.stop(id, options);
  }

  pause(id: string): Promise<void> {
    return this.backend.pause(id);
  }

  unpause(id: string): Promise<void> {
    return this.backend.unpause(id);
  }

  /** Removes the sandbox and its host directory; a sandbox already gone is fine. */
  remove(id: string): Promise<void> {
    return this.backend.remove(id);
  }

  logs(id: string, options?: LogOptions): AsyncIterable<LogChunk> {
    return this.backend.logs(id, options);
  }
}
