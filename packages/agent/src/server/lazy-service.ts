import type { AgentService } from "../rpc/service.js";

/**
 * An RPC service whose code, generated descriptors included, loads on its first call.
 * Evaluating every service's modules at start made a new sandbox's first exec wait for
 * services that most sandboxes never call (files, ports, tunnels, workspace init).
 */
export class LazyService {
  private loaded: Promise<AgentService> | undefined;

  /** `typeName` is the first segment of the service's paths ("/filesystem.Filesystem/Stat"). */
  constructor(
    readonly typeName: string,
    private readonly loader: () => Promise<AgentService>,
  ) {}

  load(): Promise<AgentService> {
    if (!this.loaded) {
      const loading = this.loader();
      // A failed load is tried again by the next call rather than remembered.
      loading.catch(() => {
        if (this.loaded === loading) this.loaded = undefined;
      });
      this.loaded = loading;
    }
    return this.loaded;
  }

  async close(): Promise<void> {
    const service = await this.loaded?.catch(() => undefined);
    await service?.close();
  }
}
