import { createHash } from "node:crypto";
import {
  AGENT_CONTAINER_PORT,
  type BuiltBundle,
  buildBundle,
  DEFAULT_MOUNT_POINT,
  defaultBundleRoot,
  markBundleUsed,
  type PruneBundlesReport,
  pruneBundles,
} from "@tether/bundle";
import Docker from "dockerode";
import { waitForAgent } from "../../agent-health.js";
import {
  EngineUnavailableError,
  ImageNotFoundError,
  InvalidSandboxSpecError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxStartError,
} from "../../errors.js";
import { tetherHome } from "../../home.js";
import { prepareImage } from "../../prepare-image.js";
import { isValidSandboxId, newSandboxId, SANDBOX_SHARE_DIR, SandboxDir } from "../../sandbox-dir.js";
import {
  LABEL_HOME,
  LABEL_MANAGED_BY,
  LABEL_SANDBOX,
  type ListFilter,
  type LogChunk,
  type LogOptions,
  MANAGED_BY,
  RESERVED_LABEL_PREFIX,
  type SandboxBackend,
  type SandboxInfo,
  type SandboxSpec,
  type SandboxState,
  type SandboxStats,
  type StopOptions,
} from "../backend.js";
import { type ValidSpec, validateSpec } from "../spec.js";
import { containerConfig, LABEL_IMAGE } from "./container-config.js";
import { detectEngine, type Engine, engineEndpoint, isConnectionError } from "./engine.js";
import { demuxLogStream, engineTimestamp, lastLines } from "./log-stream.js";

const DEFAULT_READY_TIMEOUT_MS = 60_000;
const DEFAULT_STOP_TIMEOUT_S = 10;
/**
 * The most a docker sandbox can write into its host directory (run/, mounted read-write
 * at /run/tether): a tmpfs of this size where the host may mount one. Large enough to
 * stage most files `tether cp` copies out; bigger ones stream instead.
 */
const RUN_DIR_BYTES = 1 << 30;

/** How long the look-ups `prefetch` started stand for the create that follows. */
const PREFETCH_FRESH_MS = 10_000;

/** How many of a failed container's log lines a SandboxStartError carries. */
const START_ERROR_LOG_LINES = 30;
/** A bundle used this recently stays, whatever `tether gc --older-than` says: another `tether` may be about to mount it. */
const MIN_UNUSED_BUNDLE_AGE_MS = 24 * 3600 * 1000;

export interface DockerBackendOptions {
  /** The engine client; default `new Docker()`, which follows DOCKER_HOST. */
  docker?: Docker;
  /** TETHER_HOME; default `tetherHome()`. */
  home?: string;
  /** The agent bundle; default `buildBundle()` into `bundleRoot`, built once per backend. */
  bundle?: () => Promise<BuiltBundle>;
  /** Where bundles are built, one directory per content hash, and pruned; default `defaultBundleRoot()`. */
  bundleRoot?: string;
  /**
   * How the bundle gets into the container: "mount" (default) bind-mounts it read-only;
   * "image" runs a derived image with the bundle built in (see `prepareImage`), for
   * engines that cannot bind-mount host directories.
   */
  bundleDelivery?: "mount" | "image";
}

/** What a create asks the engine about its spec before making the container. */
interface Lookups {
  image: Promise<Docker.ImageInspectInfo>;
  existing: Promise<Docker.ContainerInfo | undefined>;
}

function lookupKey(spec: SandboxSpec): string {
  return `${spec.id ?? ""}\n${spec.image}`;
}

/** Sandboxes as containers, through the Docker Engine API (Docker, or Podman's compatible socket). */
export class DockerBackend implements SandboxBackend {
  readonly kind = "docker";
  readonly docker: Docker;
  readonly home: string;
  private readonly homeLabel: string;
  private readonly delivery: "mount" | "image";
  private readonly loadBundle: () => Promise<BuiltBundle>;
  private readonly bundleRoot: string;
  private enginePromise: Promise<Engine> | undefined;
  private bundlePromise: Promise<BuiltBundle> | undefined;
  /** Look-ups `prefetch` started, for the create that follows. */
  private readonly prefetched = new Map<string, Lookups & { at: number }>();

  constructor(options: DockerBackendOptions = {}) {
    this.docker = options.docker ?? new Docker();
    this.home = options.home ?? tetherHome();
    this.homeLabel = createHash("sha256").update(this.home).digest("hex").slice(0, 12);
    this.delivery = options.bundleDelivery ?? "mount";
    this.bundleRoot = options.bundleRoot ?? defaultBundleRoot();
    this.loadBundle = options.bundle ?? (() => buildBundle({ root: this.bundleRoot }));
  }

  /** What engine this is (Docker or Podman, runtimes); asked once, EngineUnavailableError if it does not answer. */
  engine(): Promise<Engine> {
    this.enginePromise ??= detectEngine(this.docker).catch((err) => {
      this.enginePromise = undefined;
      throw err;
    });
    return this.enginePromise;
  }

  /** The agent bundle, built (or reused) once per backend. */
  bundle(): Promise<BuiltBundle> {
    this.bundlePromise ??= this.loadBundle().catch((err) => {
      this.bundlePromise = undefined;
      throw err;
    });
    return this.bundlePromise;
  }

  /**
   * The bundle for a new sandbox, marked as used now: `tether gc` keeps bundles in recent
   * use. One that a gc elsewhere removed since this backend built it is built again.
   */
  private async bundleForUse(): Promise<BuiltBundle> {
    const bundle = await this.bundle();
    try {
      await markBundleUsed(bundle.dir);
      return bundle;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") return bundle;
      this.bundlePromise = undefined;
      return this.bundle();
    }
  }

  /**
   * Removes the bundles under this backend's bundle root that no container on this engine
   * mounts (of any Tether home, running or not: a stopped sandbox starts again from its
   * bundle) and that no create used for `olderThanMs`, one day at least.
   */
  async pruneBundles(olderThanMs: number): Promise<PruneBundlesReport> {
    const containers = await this.call(() =>
      this.docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED_BY}=${MANAGED_BY}`] } }),
    );
    const mounted = containers.flatMap((c) =>
      (c.Mounts ?? []).filter((m) => m.Destination === DEFAULT_MOUNT_POINT).map((m) => m.Source),
    );
    return pruneBundles({
      root: this.bundleRoot,
      inUse: mounted,
      olderThanMs: Math.max(olderThanMs, MIN_UNUSED_BUNDLE_AGE_MS),
    });
  }

  async create(input: SandboxSpec): Promise<SandboxInfo> {
    const spec = await validateSpec(input);
    // The image is looked up while the engine describes itself: one round trip's wait instead of two.
    const lookups = this.lookups(spec);
    const engine = await this.engine();
    return this.call(async () => {
      this.checkRuntime(spec, engine);
      const id = spec.id ?? newSandboxId();
      const dir = new SandboxDir(this.home, id);
      // The host directory is made while the engine answers the look-ups (each a round trip).
      const madeDir = dir.create({ boundRunBytes: RUN_DIR_BYTES }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "EEXIST") {
          throw new InvalidSandboxSpecError(`sandbox directory ${dir.path} already exists (id ${id} is taken)`);
        }
        throw err;
      });
      let image: Docker.ImageInspectInfo;
      let runImage = spec.image;
      let bundleDir: string | undefined;
      let accessToken: string;
      try {
        let bundle: BuiltBundle;
        let existing: Docker.ContainerInfo | undefined;
        [image, bundle, existing, accessToken] = await Promise.all([
          lookups.image,
          this.bundleForUse(),
          lookups.existing,
          madeDir,
        ]);
        if (existing) throw new InvalidSandboxSpecError(`a sandbox with id ${spec.id} already exists`);
        bundleDir = bundle.dir;
        if (this.delivery === "image") {
          runImage = (await prepareImage(this.docker, spec.image, bundle)).tag;
          bundleDir = undefined;
        }
      } catch (err) {
        // Refused before a container was made: the directory goes, unless it was another's.
        const made = await madeDir.then(
          () => true,
          () => false,
        );
        if (made) await dir.remove();
        throw err;
      }

      let container: Docker.Container | undefined;
      try {
        container = await this.docker
          .createContainer(
            containerConfig({
              id,
              name: spec.name ?? `tether-${id}`,
              spec,
              runImage,
              image,
              bundleDir,
              runDir: dir.runDir,
              shareDir: dir.shareDir,
              homeLabel: this.homeLabel,
              hostUser: { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 },
              strategy: engine.strategy,
            }),
          )
          .catch((err) => {
            if (statusOf(err) === 409) {
              throw new InvalidSandboxSpecError(`container name ${spec.name ?? `tether-${id}`} is already in use`);
            }
            if (isConnectionError(err)) throw err;
            throw new SandboxStartError(id, spec.image, `the engine refused the container: ${engineMessage(err)}`, []);
          });
        const details = await this.startAndWait(id, spec.image, container, dir, spec.readyTimeoutMs);
        // What the container's inspect and our directory say: no second look-up by label.
        return this.describeStarted(details, engine, { socket: dir.socketPath, accessToken });
      } catch (err) {
        // Nothing is left behind: neither the container nor the host directory.
        if (container) await this.removeContainer(container).catch(() => {});
        await dir.remove();
        throw err;
      }
    });
  }

  /**
   * Asks the engine now to describe itself and the image, and whether a container has the
   * spec's id, and once it has answered, finds the bundle: a create of `spec` that follows soon
   * takes what they found instead of asking again.
   */
  prefetch(spec: SandboxSpec): void {
    this.engine()
      .then(() => this.bundle())
      .catch(() => {});
    if (!spec.image) return;
    this.prefetched.set(lookupKey(spec), { at: Date.now(), ...this.startLookups(spec) });
  }

  /** The image's description and the container with the spec's id: those `prefetch` asked for when recent, else asked now. */
  private lookups(spec: ValidSpec): Lookups {
    const key = lookupKey(spec);
    const early = this.prefetched.get(key);
    this.prefetched.delete(key);
    if (early && Date.now() - early.at < PREFETCH_FRESH_MS) return early;
    return this.startLookups(spec);
  }

  private startLookups(spec: SandboxSpec): Lookups {
    const image = this.inspectImage(spec.image);
    const existing = spec.id ? this.containerWithId(spec.id) : Promise.resolve(undefined);
    // Awaited by the create; until then a failure must not count as unhandled.
    image.catch(() => {});
    existing.catch(() => {});
    return { image, existing };
  }

  async start(id: string): Promise<SandboxInfo> {
    return this.call(async () => {
      const { summary, sandboxId } = await this.require(id);
      const container = this.docker.getContainer(summary.Id);
      if (summary.State === "running") return this.inspect(sandboxId);
      if (summary.State === "paused") {
        await container.unpause();
        return this.inspect(sandboxId);
      }
      const dir = new SandboxDir(this.home, sandboxId);
      await dir.prepareRestart({ boundRunBytes: RUN_DIR_BYTES });
      await this.startAndWait(sandboxId, summary.Labels[LABEL_IMAGE] ?? summary.Image, container, dir);
      return this.inspect(sandboxId);
    });
  }

  async stop(id: string, options: StopOptions = {}): Promise<void> {
    await this.call(async () => {
      const { summary } = await this.require(id);
      const container = this.docker.getContainer(summary.Id);
      // A frozen container cannot act on SIGTERM.
      if (summary.State === "paused") await container.unpause().catch(ignoreStatus(409));
      await container.stop({ t: options.timeoutSeconds ?? DEFAULT_STOP_TIMEOUT_S }).catch(ignoreStatus(304));
    });
  }

  async pause(id: string): Promise<void> {
    await this.call(async () => {
      const { summary, sandboxId } = await this.require(id);
      if (summary.State === "paused") return;
      if (summary.State !== "running") throw new SandboxNotRunningError(sandboxId, stateOf(summary.State));
      await this.docker.getContainer(summary.Id).pause();
    });
  }

  /** The engine's cgroup stats of the container (one sample) and the size of its writable layer. */
  async stats(id: string): Promise<SandboxStats> {
    return this.call(async () => {
      const { summary, sandboxId } = await this.require(id);
      if (summary.State !== "running") throw new SandboxNotRunningError(sandboxId, stateOf(summary.State));
      const container = this.docker.getContainer(summary.Id);
      const [stats, details] = await Promise.all([
        container.stats({ stream: false }),
        // dockerode passes options as the query (size=true adds SizeRw); its types lack it.
        container.inspect({ size: true } as Docker.ContainerInspectOptions),
      ]);
      // A container that stops between the look-up and the sample answers stats without cpu_stats.
      if (!stats.cpu_stats?.cpu_usage || !stats.memory_stats) throw new SandboxNotRunningError(sandboxId, "stopped");
      const online = stats.cpu_stats.online_cpus || stats.cpu_stats.cpu_usage.percpu_usage?.length || 1;
      const nanoCpus = details.HostConfig.NanoCpus ?? 0;
      const cpuCount = nanoCpus > 0 ? nanoCpus / 1e9 : online;
      const cpuDelta = stats.cpu_stats.cpu_usage.total_usage - (stats.precpu_stats.cpu_usage?.total_usage ?? 0);
      const systemDelta = stats.cpu_stats.system_cpu_usage - (stats.precpu_stats.system_cpu_usage ?? 0);
      // Docker's CPU % counts every online CPU as 100; E2B's is of the sandbox's own CPUs.
      const hostPct = systemDelta > 0 && cpuDelta > 0 ? (cpuDelta / systemDelta) * online * 100 : 0;
      const memory = stats.memory_stats;
      const cache = memory.stats?.cache ?? memory.stats?.total_inactive_file ?? 0;
      return {
        at: new Date(stats.read),
        cpuCount,
        cpuUsedPct: Math.min(100, hostPct / cpuCount),
        memUsed: Math.max(0, (memory.usage ?? 0) - cache),
        memTotal: memory.limit ?? 0,
        memCache: cache,
        diskUsed: (details as { SizeRw?: number }).SizeRw ?? 0,
      };
    });
  }

  async snapshot(id: string, tag: string): Promise<void> {
    await this.call(async () => {
      const { summary } = await this.require(id);
      const container = this.docker.getContainer(summary.Id);
      const details = await container.inspect();
      // The container runs the agent as its entrypoint, as root: the image's own settings go back in.
      const source = details.Config.Labels?.[LABEL_IMAGE] ?? details.Config.Image;
      const original = (await this.docker.getImage(source).inspect()).Config as {
        Entrypoint?: string[] | string | null;
        Cmd?: string[] | string | null;
        User?: string;
        WorkingDir?: string;
      };
      const asArray = (v: string[] | string | null | undefined) => (Array.isArray(v) ? v : v ? [v] : []);
      const colon = tag.lastIndexOf(":");
      await container.commit({
        repo: colon > tag.lastIndexOf("/") ? tag.slice(0, colon) : tag,
        tag: colon > tag.lastIndexOf("/") ? tag.slice(colon + 1) : "latest",
        pause: summary.State === "running",
        changes: [
          `ENTRYPOINT ${JSON.stringify(asArray(original.Entrypoint))}`,
          `CMD ${JSON.stringify(asArray(original.Cmd))}`,
          `USER ${original.User || "0:0"}`,
          `WORKDIR ${original.WorkingDir || "/"}`,
        ],
      });
    });
  }

  async removeSnapshot(tag: string): Promise<boolean> {
    return this.call(async () => {
      try {
        await this.docker.getImage(tag).remove();
        return true;
      } catch (err) {
        const status = (err as { statusCode?: number }).statusCode;
        if (status === 409) return false;
        if (status === 404) return true;
        throw err;
      }
    });
  }

  async unpause(id: string): Promise<void> {
    await this.call(async () => {
      const { summary, sandboxId } = await this.require(id);
      if (summary.State === "running") return;
      if (summary.State !== "paused") throw new SandboxNotRunningError(sandboxId, stateOf(summary.State));
      await this.docker.getContainer(summary.Id).unpause();
    });
  }

  async remove(id: string): Promise<void> {
    await this.call(async () => {
      const found = await this.findContainer(id);
      if (found) await this.removeContainer(this.docker.getContainer(found.Id));
      const sandboxId = found?.Labels[LABEL_SANDBOX] ?? id;
      if (isValidSandboxId(sandboxId)) await new SandboxDir(this.home, sandboxId).remove();
    });
  }

  async *logs(id: string, options: LogOptions = {}): AsyncGenerator<LogChunk> {
    const { summary } = await this.call(() => this.require(id));
    const container = this.docker.getContainer(summary.Id);
    const common = {
      stdout: true,
      stderr: true,
      ...(options.tail !== undefined ? { tail: options.tail } : {}),
      ...(options.timestamps ? { timestamps: true } : {}),
      // The engine takes whole seconds here; finer is the caller's to cut.
      ...(options.since ? { since: Math.floor(options.since.getTime() / 1000) } : {}),
    };
    const stamped = (chunk: LogChunk) => (options.timestamps ? engineTimestamp(chunk) : chunk);
    if (!options.follow) {
      // Without follow the engine answers with the whole log at once.
      const buffer = await this.call(() => container.logs({ ...common, follow: false }));
      for await (const chunk of demuxLogStream([buffer])) yield stamped(chunk);
      return;
    }
    const stream = (await this.call(() => container.logs({ ...common, follow: true }))) as NodeJS.ReadableStream &
      AsyncIterable<Buffer> & { destroy(): void };
    const abort = () => stream.destroy();
    options.signal?.addEventListener("abort", abort, { once: true });
    try {
      if (options.signal?.aborted) return;
      for await (const chunk of demuxLogStream(stream)) yield stamped(chunk);
    } catch (err) {
      if (!options.signal?.aborted) throw err;
    } finally {
      options.signal?.removeEventListener("abort", abort);
      stream.destroy();
    }
  }

  async inspect(id: string): Promise<SandboxInfo> {
    return this.call(async () => {
      const { summary, sandboxId } = await this.require(id);
      let details: Docker.ContainerInspectInfo;
      try {
        details = await this.docker.getContainer(summary.Id).inspect();
      } catch (err) {
        if (statusOf(err) === 404) throw new SandboxNotFoundError(id);
        throw err;
      }
      const engine = await this.engine();
      const state = stateOf(details.State.Status);
      const info = await this.describe(summary, state);
      if (state === "stopped" || state === "error") info.exitCode = details.State.ExitCode;
      const address = engine.strategy.containerAddress(details);
      if (info.endpoint && address && state === "running" && details.HostConfig.NetworkMode !== "none") {
        info.endpoint.url = `http://${address}:${AGENT_CONTAINER_PORT}`;
      }
      this.addSharedDirs(info, details, engine, sandboxId);
      return info;
    });
  }

  async list(filter: ListFilter = {}): Promise<SandboxInfo[]> {
    return this.call(async () => {
      const labels = [...this.ownLabels(), ...Object.entries(filter.labels ?? {}).map(([k, v]) => `${k}=${v}`)];
      const summaries = await this.docker.listContainers({ all: true, filters: { label: labels } });
      return Promise.all(summaries.map((s) => this.describe(s, stateOf(s.State))));
    });
  }

  /**
   * Starts the container and waits for its agent; a container that dies first is a
   * SandboxStartError. Returns the container's inspect, asked while the agent starts.
   */
  private async startAndWait(
    id: string,
    image: string,
    container: Docker.Container,
    dir: SandboxDir,
    timeoutMs = DEFAULT_READY_TIMEOUT_MS,
  ): Promise<Docker.ContainerInspectInfo> {
    try {
      await container.start();
    } catch (err) {
      if (isConnectionError(err)) throw err;
      throw new SandboxStartError(id, image, engineMessage(err), await this.tailLogs(container));
    }
    // The engine answers this while the agent starts (its address, state, labels for the result).
    const inspected = container.inspect();
    inspected.catch(() => {});
    const notReady = await waitForAgent(
      dir.agentSocketPath,
      async () => {
        const state = await container.inspect().catch(() => undefined);
        return { alive: state?.State.Running === true, detail: state?.State.Status };
      },
      timeoutMs,
    );
    if (!notReady) {
      // The socket the agent just bound is the one the host keeps (see adoptSocket).
      await dir.adoptSocket();
      return inspected;
    }
    const state = await container.inspect().catch(() => undefined);
    const reason =
      notReady.reason === "died"
        ? `the container exited (code ${state?.State.ExitCode ?? "?"}) before its agent answered`
        : `its agent did not answer health within ${timeoutMs} ms`;
    throw new SandboxStartError(id, image, reason, await this.tailLogs(container), state?.State.ExitCode);
  }

  /**
   * Force-removes a container. Podman can refuse while a container it is killing has just
   * exited on its own ("container state improper"): that race is retried a few times.
   */
  private async removeContainer(container: Docker.Container): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await container.remove({ force: true, v: true });
        return;
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) return;
        if (attempt >= 5 || (status !== 409 && status !== 500)) throw err;
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  private async tailLogs(container: Docker.Container): Promise<string[]> {
    try {
      const buffer = await container.logs({ stdout: true, stderr: true, follow: false, tail: START_ERROR_LOG_LINES });
      const chunks: LogChunk[] = [];
      for await (const chunk of demuxLogStream([buffer])) chunks.push(chunk);
      return lastLines(chunks, START_ERROR_LOG_LINES);
    } catch {
      return [];
    }
  }

  private checkRuntime(spec: ValidSpec, engine: Engine): void {
    if (spec.runtime === undefined) return;
    if (!engine.runtimes.includes(spec.runtime)) {
      throw new InvalidSandboxSpecError(
        `runtime ${spec.runtime} is not available in ${engine.kind} at ${engine.endpoint} (it has: ${engine.runtimes.join(", ") || "none listed"})`,
      );
    }
    // gVisor registered with --network=none (see scripts/start-dockerd.sh) has no network to bridge.
    if (spec.network === "bridge" && engine.runtimeArgs[spec.runtime]?.includes("--network=none")) {
      throw new InvalidSandboxSpecError(
        `runtime ${spec.runtime} is registered with --network=none in ${engine.kind}: use network "none" with it`,
      );
    }
  }

  private async inspectImage(image: string): Promise<Docker.ImageInspectInfo> {
    try {
      return await this.docker.getImage(image).inspect();
    } catch (err) {
      if (statusOf(err) === 404) {
        const engine = await this.engine();
        throw new ImageNotFoundError(image, `${engine.kind} at ${engine.endpoint}`);
      }
      throw err;
    }
  }

  /** The managed container for an id (our label) or a container name, under this home. */
  private async findContainer(idOrName: string): Promise<Docker.ContainerInfo | undefined> {
    const byId = await this.containerWithId(idOrName);
    if (byId) return byId;
    const byName = await this.docker.listContainers({
      all: true,
      filters: { label: this.ownLabels(), name: [idOrName] },
    });
    return byName.find((c) => c.Names.some((n) => n.replace(/^\//, "") === idOrName));
  }

  /** The managed container of sandbox `id` under this home (by our label only). */
  private async containerWithId(id: string): Promise<Docker.ContainerInfo | undefined> {
    const [found] = await this.docker.listContainers({
      all: true,
      filters: { label: [...this.ownLabels(), `${LABEL_SANDBOX}=${id}`] },
    });
    return found;
  }

  private ownLabels(): string[] {
    return [`${LABEL_MANAGED_BY}=${MANAGED_BY}`, `${LABEL_HOME}=${this.homeLabel}`];
  }

  private async require(id: string): Promise<{ summary: Docker.ContainerInfo; sandboxId: string }> {
    const summary = await this.findContainer(id);
    if (!summary) throw new SandboxNotFoundError(id);
    return { summary, sandboxId: summary.Labels[LABEL_SANDBOX] };
  }

  /** `inspect`'s answer for a container just started, from its inspect (asked once the agent began). */
  private describeStarted(
    details: Docker.ContainerInspectInfo,
    engine: Engine,
    endpoint: NonNullable<SandboxInfo["endpoint"]>,
  ): SandboxInfo {
    const labels = details.Config.Labels ?? {};
    const created = Date.parse(details.Created);
    const info: SandboxInfo = {
      id: labels[LABEL_SANDBOX],
      name: details.Name.replace(/^\//, ""),
      backend: this.kind,
      image: labels[LABEL_IMAGE] ?? details.Config.Image,
      // It answered health, so it runs.
      state: "running",
      labels: Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith(RESERVED_LABEL_PREFIX))),
      // The engine's list gives whole seconds; the same here, so create and a later get agree.
      createdAt: new Date(Number.isNaN(created) ? Date.now() : Math.floor(created / 1000) * 1000),
      backendId: details.Id,
      endpoint: { ...endpoint },
    };
    const address = engine.strategy.containerAddress(details);
    if (address && info.endpoint && details.HostConfig.NetworkMode !== "none") {
      info.endpoint.url = `http://${address}:${AGENT_CONTAINER_PORT}`;
    }
    this.addSharedDirs(info, details, engine, info.id);
    return info;
  }

  /** The directories tether cp stages files in, when this container shares them with the host. */
  private addSharedDirs(
    info: SandboxInfo,
    details: Docker.ContainerInspectInfo,
    engine: Engine,
    sandboxId: string,
  ): void {
    if (!info.endpoint || !sharesRunDir(details, engine)) return;
    const dir = new SandboxDir(this.home, sandboxId);
    info.endpoint.transferDir = dir.runDir;
    // Containers made before share/ existed have no such mount.
    if (details.HostConfig.Binds?.some((bind) => bind.startsWith(`${dir.shareDir}:${SANDBOX_SHARE_DIR}:ro`))) {
      info.endpoint.importDir = dir.shareDir;
    }
  }

  private async describe(summary: Docker.ContainerInfo, state: SandboxState): Promise<SandboxInfo> {
    const id = summary.Labels[LABEL_SANDBOX];
    const labels = Object.fromEntries(
      Object.entries(summary.Labels).filter(([k]) => !k.startsWith(RESERVED_LABEL_PREFIX)),
    );
    const info: SandboxInfo = {
      id,
      name: (summary.Names[0] ?? "").replace(/^\//, ""),
      backend: this.kind,
      image: summary.Labels[LABEL_IMAGE] ?? summary.Image,
      state,
      labels,
      createdAt: new Date(summary.Created * 1000),
      backendId: summary.Id,
    };
    if (isValidSandboxId(id)) {
      const dir = new SandboxDir(this.home, id);
      const accessToken = await dir.readToken();
      if (accessToken) info.endpoint = { socket: dir.socketPath, accessToken };
    }
    return info;
  }

  /** Runs engine calls, turning "cannot connect" into EngineUnavailableError. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isConnectionError(err)) throw new EngineUnavailableError(engineEndpoint(this.docker), err);
      throw err;
    }
  }
}

/** The engine's container states in ours. */
function stateOf(status: string): SandboxState {
  switch (status) {
    case "running":
    case "restarting":
      return "running";
    case "paused":
      return "paused";
    case "created":
      return "creating";
    case "exited":
    case "removing":
      return "stopped";
    default:
      return "error";
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number } | undefined)?.statusCode;
}

/** The engine's own words for an API error, without dockerode's "(HTTP code 500) server error -" prefix. */
function engineMessage(err: unknown): string {
  const json = (err as { json?: { message?: string } }).json;
  return json?.message ?? (err as Error).message;
}

function ignoreStatus(...codes: number[]): (err: unknown) => void {
  return (err) => {
    if (!codes.includes(statusOf(err) ?? 0)) throw err;
  };
}

/**
 * Whether the container sees its run/ and share/ mounts as the host writes them, so files
 * can be handed over there: only for an engine on this machine (a unix socket), and under
 * gVisor (runsc) only while its bind mounts stay shared with the host (the default;
 * checked with runsc's --host-uds=create here: fresh names both ways, same bytes). Every
 * hand-over also checks sizes and falls back to streaming when they disagree.
 */
function sharesRunDir(details: Docker.ContainerInspectInfo, engine: Engine): boolean {
  if (!engine.endpoint.startsWith("unix://")) return false;
  const runtime = details.HostConfig.Runtime ?? engine.defaultRuntime ?? "runc";
  const args = engine.runtimeArgs[runtime] ?? [];
  return !args.some((arg) => arg.startsWith("--file-access-mounts=") && !arg.endsWith("=shared"));
}
