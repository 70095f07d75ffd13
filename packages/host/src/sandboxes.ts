import { type Agent, connect } from "@tether/sdk";
import { BACKEND_KINDS, type BackendKind, embeddedBackendKind, ISOLATION } from "./backends/availability.js";
import type {
  ListFilter,
  LogChunk,
  LogOptions,
  SandboxBackend,
  SandboxInfo,
  SandboxSpec,
  SandboxState,
  SandboxStats,
  StopOptions,
} from "./backends/backend.js";
import type { DockerBackendOptions } from "./backends/docker/docker-backend.js";
import { BACKENDS, type BackendOptions, isBackendKind } from "./backends/kinds.js";
import { HOST_IMAGE } from "./backends/process/process-backend.js";
import { validateSpec } from "./backends/spec.js";
import { SandboxCopy } from "./copy/sandbox-copy.js";
import {
  EngineUnavailableError,
  ImageNotFoundError,
  InvalidSandboxSpecError,
  RegistryError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  TetherHostError,
} from "./errors.js";
import { tetherHome } from "./home.js";
import { type LifecycleContext, messageOf } from "./lifecycle/context.js";
import { type Expired, expireSandboxes } from "./lifecycle/expiry.js";
import { collectGarbage, DEFAULT_GC_AGE_MS, type GcOptions, type GcReport } from "./lifecycle/gc.js";
import { type ReconcileReport, reconcile, VANISHED } from "./lifecycle/reconcile.js";
import { currentProcess } from "./process-identity.js";
import { type ExpiryAction, Registry, type SandboxRecord } from "./registry/registry.js";
import { newSandboxId } from "./sandbox-dir.js";

/** Everything `create` takes beside the image. */
export interface CreateOptions extends Omit<SandboxSpec, "image"> {
  /**
   * Which backend: "docker" (the default with an image), "bwrap" or "local". Without an
   * image the default is the embedded one: bwrap where it works, else local.
   */
  backend?: BackendKind;
  /** Absolute lifetime in ms, counted from creation and from every start. */
  timeoutMs?: number;
  /** How long the sandbox may go without agent requests or host-side use, in ms. */
  idleTimeoutMs?: number;
  /** What expiry does: "stop" (default) or "remove". */
  onExpiry?: ExpiryAction;
  /** Free-form facts recorded with the sandbox. */
  metadata?: Record<string, unknown>;
}

/** Lifetime settings `setTimeouts` changes; null clears one. */
export interface TimeoutOptions {
  timeoutMs?: number | null;
  idleTimeoutMs?: number | null;
  onExpiry?: ExpiryAction;
}

export interface SandboxesOptions {
  /** One backend to use for everything (tests, embedders); by default every kind, made on first use. */
  backend?: SandboxBackend;
  docker?: DockerBackendOptions;
  /** The vm backend's options beside those it shares with docker (see BackendOptions). */
  vm?: BackendOptions["vm"];
  /** TETHER_HOME; default `docker.home`, else `tetherHome()`. */
  home?: string;
  /** The registry; default `tether.db` in the home. `false`: none (the backends' view only). */
  registry?: Registry | false;
  /** When the registry cannot be opened, go on without it instead of failing. */
  registryOptional?: boolean;
  /** Reconcile and expire before the first operation (what every CLI call does); default true. */
  maintainOnStart?: boolean;
}

/** What `maintain` did: a reconcile, then expiry. */
export interface MaintenanceReport {
  reconcile: ReconcileReport;
  expired: Expired[];
}

/** Filters for `list`: labels, and states (default every state but archived). */
export interface SandboxFilter extends ListFilter {
  states?: readonly SandboxState[];
}

/** The backend kinds as an error names them: "docker, bwrap or local". */
const KINDS_TEXT = `${BACKEND_KINDS.slice(0, -1).join(", ")} or ${BACKEND_KINDS.at(-1)}`;

function positiveMs(name: string, value: number | undefined | null): void {
  if (value === undefined || value === null) return;
  if (!Number.isInteger(value) || value <= 0) {
    throw new InvalidSandboxSpecError(`${name} must be a positive whole number of milliseconds, not ${value}`);
  }
}

/**
 * The host's entry point: create sandboxes (from an image in Docker, or from the host in
 * bwrap or local), find them again, connect to their agents. Every sandbox is recorded
 * in the registry (SQLite in TETHER_HOME) before its backend makes anything, so a crash
 * at any point leaves a record that `reconcile` settles; timeouts are enforced by
 * `expire` (run on every CLI call, and by `startExpiryLoop` in long-running processes).
 */
export class Sandboxes {
  /** The default backend for sandboxes with an image. */
  readonly backend: SandboxBackend;
  readonly home: string;
  /** Undefined when running without a registry. */
  readonly registry: Registry | undefined;
  /** Why the registry could not be opened, when `registryOptional` let us go on without it. */
  readonly registryProblem: string | undefined;
  private readonly backends = new Map<string, SandboxBackend>();
  private readonly dockerOptions: DockerBackendOptions;
  private readonly vmOptions: BackendOptions["vm"];
  private readonly single: boolean;
  private readonly maintainOnStart: boolean;
  private maintenance: Promise<MaintenanceReport | undefined> | undefined;
  /** The live sandboxes maintenance just saw, so the first `list` need not ask the backends again. */
  private freshLive: { at: number; live: Map<string, SandboxInfo> } | undefined;

  constructor(options: SandboxesOptions = {}) {
    this.home = options.home ?? options.docker?.home ?? tetherHome();
    this.dockerOptions = { ...options.docker, home: this.home };
    this.vmOptions = options.vm;
    this.single = options.backend !== undefined;
    if (options.backend) this.backends.set(options.backend.kind, options.backend);
    this.backend = options.backend ?? this.backendFor("docker");
    let registry: Registry | undefined;
    let problem: string | undefined;
    if (options.registry !== false) {
      try {
        registry = options.registry ?? new Registry(this.home);
      } catch (err) {
        if (!options.registryOptional) throw err;
        problem = (err as Error).message;
      }
    }
    this.registry = registry;
    this.registryProblem = problem;
    this.maintainOnStart = options.maintainOnStart ?? true;
  }

  /** The backend of a kind, made on first use. */
  backendFor(kind: string): SandboxBackend {
    let backend = this.backends.get(kind);
    if (backend) return backend;
    if (this.single) throw new InvalidSandboxSpecError(`backend ${kind} is not configured here`);
    if (!isBackendKind(kind)) {
      throw new InvalidSandboxSpecError(`unknown backend ${JSON.stringify(kind)} (${KINDS_TEXT})`);
    }
    backend = BACKENDS[kind].make({ home: this.home, docker: this.dockerOptions, vm: this.vmOptions });
    this.backends.set(kind, backend);
    return backend;
  }

  /**
   * Creates and starts a sandbox; resolves once its agent answers. With an image it is
   * a container (docker); without, the embedded default (bwrap where it works, else local)
   * unless `options.backend` says otherwise. The record is written first, in state
   * `creating`, then set to what the backend made, or to `error` with the reason (or
   * dropped when the backend refused before making anything: no engine, no image, bad spec).
   */
  async create(image?: string, options: CreateOptions = {}): Promise<SandboxInfo> {
    const { backend: requested, timeoutMs, idleTimeoutMs, onExpiry, metadata, ...specOptions } = options;
    positiveMs("timeoutMs", timeoutMs);
    positiveMs("idleTimeoutMs", idleTimeoutMs);
    if (onExpiry !== undefined && onExpiry !== "stop" && onExpiry !== "remove") {
      throw new InvalidSandboxSpecError(`onExpiry must be "stop" or "remove", not ${JSON.stringify(onExpiry)}`);
    }
    const kind = await this.chooseBackend(image, requested);
    const backend = this.backendFor(kind);
    const id = specOptions.id ?? newSandboxId();
    const name = specOptions.name ?? `tether-${id}`;
    const spec: SandboxSpec = { ...specOptions, id, name, image: image || HOST_IMAGE };
    // Bad input changes nothing: checked before the record is written.
    const valid = await validateSpec(spec);
    // The backend's look-ups (the engine, the image) go on while the registry is reconciled.
    backend.prefetch?.(spec);
    await this.maintain();
    const registry = this.registry;
    if (registry) {
      const now = new Date();
      registry.insert({
        id,
        name,
        backend: kind,
        image: spec.image,
        state: "creating",
        labels: valid.labels,
        metadata: metadata ?? {},
        resources: {
          network: valid.network,
          ...(valid.cpus !== undefined ? { cpus: valid.cpus } : {}),
          ...(valid.memory !== undefined ? { memory: valid.memory } : {}),
          ...(valid.pidsLimit !== undefined ? { pidsLimit: valid.pidsLimit } : {}),
          ...(valid.runtime !== undefined ? { runtime: valid.runtime } : {}),
        },
        createdAt: now,
        lastUsedAt: now,
        timeoutMs,
        expiresAt: timeoutMs !== undefined ? new Date(now.getTime() + timeoutMs) : undefined,
        idleTimeoutMs,
        onExpiry: onExpiry ?? "stop",
        creator: currentProcess(),
      });
    }
    let info: SandboxInfo;
    try {
      info = await backend.create(spec);
    } catch (err) {
      const message = (err as Error).message;
      if (
        err instanceof EngineUnavailableError ||
        err instanceof InvalidSandboxSpecError ||
        err instanceof ImageNotFoundError
      ) {
        // Refused before anything was made: nothing to record.
        registry?.delete(id, { event: { kind: "create-refused", detail: message } });
      } else {
        registry?.update(
          id,
          { state: "error", error: message, creator: undefined },
          { event: { kind: "create-failed", detail: message } },
        );
      }
      throw err;
    }
    // Both clocks run from when it answers, as after `start`: a VM booting for 20 s under
    // TCG would otherwise be due (or idle) before it was ever used.
    const startedAt = new Date();
    const record = registry?.update(
      id,
      {
        state: info.state,
        backendId: info.backendId || undefined,
        creator: undefined,
        lastUsedAt: startedAt,
        ...(timeoutMs !== undefined ? { expiresAt: new Date(startedAt.getTime() + timeoutMs) } : {}),
      },
      { event: { kind: "started" } },
    );
    return this.merge(info, record);
  }

  /** The sandbox by id (or name); SandboxNotFoundError when neither the registry nor a backend knows it. */
  async get(id: string): Promise<SandboxInfo> {
    await this.maintain();
    const { info } = await this.resolve(id);
    return info;
  }

  /** Sandboxes matching the filter (every state but archived unless `states` names it), oldest first. */
  async list(filter: SandboxFilter = {}): Promise<SandboxInfo[]> {
    await this.maintain();
    const registry = this.registry;
    if (!registry) {
      const all: SandboxInfo[] = [];
      for (const kind of this.kinds()) {
        const infos = await this.backendFor(kind)
          .list({ labels: filter.labels })
          .catch(() => []);
        all.push(...infos.filter((i) => !filter.states || filter.states.includes(i.state)));
      }
      return all.map((i) => this.merge(i, undefined));
    }
    let live = this.freshLive && Date.now() - this.freshLive.at < 2000 ? this.freshLive.live : undefined;
    this.freshLive = undefined;
    live ??= (await reconcile(this.lifecycle(registry))).live;
    return registry
      .list({ states: filter.states, labels: filter.labels })
      .map((record) => this.merge(live.get(record.id), record));
  }

  /**
   * Sandboxes matching the filter as the registry last recorded them, without asking the
   * backends: no engine round trip, and no work per sandbox beyond its record. A sandbox
   * that died unseen shows its recorded state until the next reconcile, so this suits counts
   * that may err high (a limit), not a listing. Without a registry it is `list`.
   */
  async recorded(filter: SandboxFilter = {}): Promise<SandboxInfo[]> {
    const registry = this.registry;
    if (!registry) return this.list(filter);
    await this.maintain();
    return registry
      .list({ states: filter.states, labels: filter.labels })
      .map((record) => this.merge(undefined, record));
  }

  /** A client for the sandbox's agent, over its unix socket; the caller closes it. Counts as use. */
  async connect(id: string, options: { user?: string } = {}): Promise<Agent> {
    await this.maintain();
    const { info } = await this.resolve(id);
    return this.connectResolved(info, options.user);
  }

  private async connectResolved(info: SandboxInfo, user: string | undefined): Promise<Agent> {
    if (info.state !== "running") throw new SandboxNotRunningError(info.id, info.state);
    if (!info.endpoint) {
      throw new TetherHostError(`sandbox ${info.id} has no host directory (its socket and token are gone)`);
    }
    this.registry?.touch(info.id);
    return connect({ socket: info.endpoint.socket, accessToken: info.endpoint.accessToken, user });
  }

  /**
   * What `tether cp` copies with: a SandboxCopy on a new connection to the sandbox's agent
   * (closed by its `close`), through the directory the host shares with the sandbox when
   * there is one. Counts as use.
   */
  async copier(id: string, options: { user?: string } = {}): Promise<SandboxCopy> {
    await this.maintain();
    const { info } = await this.resolve(id);
    const agent = await this.connectResolved(info, options.user);
    const copy = new SandboxCopy(agent, {
      transferDir: info.endpoint?.transferDir,
      importDir: info.endpoint?.importDir,
    });
    await copy.sweep();
    return copy;
  }

  /** Starts a stopped sandbox (its absolute timeout counts again from now). */
  async start(id: string): Promise<SandboxInfo> {
    await this.maintain();
    const { record, backend, info: before } = await this.resolve(id);
    const info = await backend.start(before.id);
    const now = new Date();
    const updated = this.registry?.update(
      info.id,
      {
        state: info.state,
        backendId: info.backendId || undefined,
        error: undefined,
        lastUsedAt: now,
        ...(record?.timeoutMs !== undefined ? { expiresAt: new Date(now.getTime() + record.timeoutMs) } : {}),
      },
      { event: { kind: "started" } },
    );
    return this.merge(info, updated ?? record);
  }

  async stop(id: string, options?: StopOptions): Promise<void> {
    await this.maintain();
    const { backend, info } = await this.resolve(id);
    await backend.stop(info.id, options);
    this.registry?.update(info.id, { state: "stopped", lastUsedAt: new Date() }, { event: { kind: "stopped" } });
  }

  async pause(id: string): Promise<void> {
    await this.maintain();
    const { backend, info } = await this.resolve(id);
    await backend.pause(info.id);
    this.registry?.update(info.id, { state: "paused", lastUsedAt: new Date() }, { event: { kind: "paused" } });
  }

  async unpause(id: string): Promise<void> {
    await this.maintain();
    const { backend, info } = await this.resolve(id);
    await backend.unpause(info.id);
    this.registry?.update(info.id, { state: "running", lastUsedAt: new Date() }, { event: { kind: "unpaused" } });
  }

  /** Removes the sandbox, its host directory and its record; a sandbox already gone is fine. */
  async remove(id: string): Promise<void> {
    await this.maintain();
    const record = this.registry?.get(id);
    if (!record) {
      // Unrecorded (or no registry): the backend that has it, else the default one (which
      // clears a host directory left behind).
      const found = await this.resolve(id).catch((err) => {
        if (err instanceof SandboxNotFoundError) return undefined;
        throw err;
      });
      await (found?.backend ?? this.backend).remove(found?.info.id ?? id);
      return;
    }
    if (record.state !== "archived") await this.backendFor(record.backend).remove(record.id);
    this.registry?.delete(record.id, { event: { kind: "removed" } });
  }

  /** The sandbox's resource use now; undefined where its backend reports none (local, bwrap). */
  async stats(id: string): Promise<SandboxStats | undefined> {
    await this.maintain();
    const { backend, info } = await this.resolve(id);
    return backend.stats ? backend.stats(info.id) : undefined;
  }

  /** Keeps the sandbox as `tag` (see SandboxBackend.snapshot): docker's filesystem, vm's memory too. */
  async snapshot(id: string, tag: string): Promise<void> {
    await this.maintain();
    const { backend, info } = await this.resolve(id);
    if (!backend.snapshot) throw new InvalidSandboxSpecError(`${backend.kind} sandboxes cannot be snapshotted`);
    await backend.snapshot(info.id, tag);
  }

  /** Removes a snapshot's image; false while sandboxes use it. */
  async removeSnapshot(tag: string, backendKind = "docker"): Promise<boolean> {
    const backend = this.backendFor(backendKind);
    return backend.removeSnapshot ? backend.removeSnapshot(tag) : false;
  }

  async *logs(id: string, options?: LogOptions): AsyncGenerator<LogChunk> {
    await this.maintain();
    const { backend, info } = await this.resolve(id);
    this.registry?.touch(info.id);
    yield* backend.logs(info.id, options);
  }

  /** Changes a sandbox's timeouts; a new absolute timeout counts from now (as E2B's setTimeout). */
  async setTimeouts(id: string, options: TimeoutOptions): Promise<SandboxInfo> {
    positiveMs("timeoutMs", options.timeoutMs);
    positiveMs("idleTimeoutMs", options.idleTimeoutMs);
    const registry = this.requireRegistry();
    const record = registry.get(id);
    if (!record) throw new SandboxNotFoundError(id);
    const patch: Partial<SandboxRecord> = {};
    if (options.timeoutMs !== undefined) {
      patch.timeoutMs = options.timeoutMs ?? undefined;
      patch.expiresAt = options.timeoutMs === null ? undefined : new Date(Date.now() + options.timeoutMs);
    }
    if (options.idleTimeoutMs !== undefined) patch.idleTimeoutMs = options.idleTimeoutMs ?? undefined;
    if (options.onExpiry !== undefined) patch.onExpiry = options.onExpiry;
    registry.update(record.id, patch, { event: { kind: "timeouts", detail: JSON.stringify(options) } });
    return this.get(record.id);
  }

  /** Makes the registry agree with the backends (adopt, mark vanished, fix drift, settle interrupted creations). */
  async reconcile(): Promise<ReconcileReport> {
    return (await reconcile(this.lifecycle(this.requireRegistry()))).report;
  }

  /** Stops or removes every sandbox whose timeout or idle timeout has passed. */
  async expire(now?: number): Promise<Expired[]> {
    return expireSandboxes(this.lifecycle(this.requireRegistry()), now);
  }

  /** Archives stopped and failed sandboxes older than the threshold. */
  async gc(options: GcOptions = {}): Promise<GcReport> {
    await this.maintain();
    const report = await collectGarbage(this.lifecycle(this.requireRegistry()), options);
    return { ...report, bundles: await this.pruneBundles(options.olderThanMs ?? DEFAULT_GC_AGE_MS) };
  }

  /** Old agent bundles go too (Docker's bundle directories, the vm backend's cached disks). */
  private async pruneBundles(olderThanMs: number): Promise<GcReport["bundles"]> {
    const backends = this.kinds().map((kind) => this.backendFor(kind));
    if (!backends.some((b) => b.pruneBundles)) return undefined;
    const removed: NonNullable<GcReport["bundles"]>["removed"] = [];
    const skipped: string[] = [];
    for (const backend of backends) {
      if (!backend.pruneBundles) continue;
      try {
        removed.push(...(await backend.pruneBundles(olderThanMs)).removed);
      } catch (err) {
        skipped.push(`${backend.kind}: ${messageOf(err)}`);
      }
    }
    return skipped.length > 0 ? { removed, skipped: skipped.join("; ") } : { removed };
  }

  /** The history of a sandbox as the registry has it. */
  events(id: string) {
    const registry = this.requireRegistry();
    const record = registry.get(id);
    if (!record) throw new SandboxNotFoundError(id);
    return registry.events(record.id);
  }

  /**
   * Reconcile, then expiry, once per facade (later calls get the first one's report).
   * Failures are reported, never thrown: the operation asked for goes on.
   */
  maintain(): Promise<MaintenanceReport | undefined> {
    // A registry that cannot be written is only read: reconcile would act and not record it.
    if (!this.maintainOnStart || !this.registry || this.registry.readOnly) return Promise.resolve(undefined);
    const registry = this.registry;
    this.maintenance ??= (async () => {
      const ctx = this.lifecycle(registry);
      const { report, live } = await reconcile(ctx);
      this.freshLive = { at: Date.now(), live };
      return { reconcile: report, expired: await expireSandboxes(ctx) };
    })().catch((err: unknown) => {
      this.maintenanceError = err instanceof Error ? err.message : String(err);
      return undefined;
    });
    return this.maintenance;
  }

  /** Why the last maintenance failed, if it did. */
  maintenanceError: string | undefined;

  /** Closes the registry. */
  close(): void {
    this.registry?.close();
  }

  /** The backend kind a create goes to. */
  private async chooseBackend(image: string | undefined, requested: BackendKind | undefined): Promise<string> {
    if (requested !== undefined) {
      if (!isBackendKind(requested)) {
        throw new InvalidSandboxSpecError(`unknown backend ${JSON.stringify(requested)} (${KINDS_TEXT})`);
      }
      if (image && !BACKENDS[requested].image && !this.single) {
        throw new InvalidSandboxSpecError(`an image needs a container engine: use --backend docker (or no --image)`);
      }
      if (!image && BACKENDS[requested].image) {
        throw new InvalidSandboxSpecError(`backend ${requested} needs an image`);
      }
      return requested;
    }
    if (image || this.single) return this.backend.kind;
    return embeddedBackendKind();
  }

  /** Kinds that may hold sandboxes: with a registry, those it records plus docker's labelled containers. */
  private kinds(): string[] {
    if (this.single) return [this.backend.kind];
    return [...BACKEND_KINDS];
  }

  private lifecycle(registry: Registry): LifecycleContext {
    return { home: this.home, registry, backend: (kind) => this.backendFor(kind), kinds: () => this.kinds() };
  }

  private requireRegistry(): Registry {
    if (!this.registry)
      throw new RegistryError(`no registry here${this.registryProblem ? `: ${this.registryProblem}` : ""}`);
    return this.registry;
  }

  /**
   * Finds a sandbox: its record (by id or name), its backend, and what the backend says
   * now. A record whose sandbox is gone is marked vanished (state error, no endpoint);
   * a drifted state is corrected. SandboxNotFoundError only for what nothing knows.
   */
  private async resolve(
    id: string,
  ): Promise<{ record: SandboxRecord | undefined; backend: SandboxBackend; info: SandboxInfo }> {
    const record = this.registry?.get(id);
    if (!record) {
      // Unrecorded (no registry, or not adopted yet): ask the backends in turn.
      let failure: unknown;
      for (const kind of this.single ? [this.backend.kind] : this.kinds()) {
        const backend = this.backendFor(kind);
        const info = await backend.inspect(id).catch((err) => {
          if (!(err instanceof SandboxNotFoundError) && kind === this.backend.kind) failure = err;
          return undefined;
        });
        if (info) return { record: undefined, backend, info: this.merge(info, undefined) };
      }
      throw failure ?? new SandboxNotFoundError(id);
    }
    const backend = this.backendFor(record.backend);
    if (record.state === "archived") return { record, backend, info: this.merge(undefined, record) };
    let info: SandboxInfo;
    try {
      info = await backend.inspect(record.id);
    } catch (err) {
      if (!(err instanceof SandboxNotFoundError) || record.state === "creating") throw err;
      // Known but gone (removed behind our back, or never made): the record says so.
      const marked =
        record.state === "error"
          ? record
          : (this.registry?.update(
              record.id,
              { state: "error", error: VANISHED, backendId: undefined },
              { event: { kind: "vanished", detail: `was ${record.state}` } },
            ) ?? record);
      return { record: marked, backend, info: this.merge(undefined, marked) };
    }
    let current = record;
    if (info.state !== record.state && record.state !== "creating") {
      current =
        this.registry?.update(
          record.id,
          { state: info.state, ...(info.state === "error" ? {} : { error: undefined }) },
          { event: { kind: "drift", detail: `${record.state} -> ${info.state}` } },
        ) ?? record;
    }
    return { record: current, backend, info: this.merge(info, current) };
  }

  /** What callers see: the backend's view (live state, endpoint) with the record's lifetime fields. */
  private merge(info: SandboxInfo | undefined, record: SandboxRecord | undefined): SandboxInfo {
    const base: SandboxInfo = info ?? {
      id: record?.id ?? "",
      name: record?.name ?? "",
      backend: record?.backend ?? "",
      image: record?.image ?? "",
      state: record?.state ?? "error",
      labels: record?.labels ?? {},
      createdAt: record?.createdAt ?? new Date(0),
      backendId: record?.backendId ?? "",
    };
    const out: SandboxInfo = {
      ...base,
      isolation: ISOLATION[base.backend as BackendKind] ?? base.backend,
    };
    if (!record) return out;
    out.name = record.name;
    out.createdAt = record.createdAt;
    out.lastUsedAt = record.lastUsedAt;
    out.onExpiry = record.onExpiry;
    out.metadata = record.metadata;
    if (!info) out.state = record.state;
    if (record.timeoutMs !== undefined) out.timeoutMs = record.timeoutMs;
    if (record.expiresAt) out.expiresAt = record.expiresAt;
    if (record.idleTimeoutMs !== undefined) out.idleTimeoutMs = record.idleTimeoutMs;
    if (record.error && out.state === "error") out.error = record.error;
    if (record.archivePath) out.archivePath = record.archivePath;
    return out;
  }
}

/** A running expiry loop; `stop()` ends it. */
export interface ExpiryLoop {
  stop(): void;
}

/**
 * Runs expiry every `intervalMs` (and reconcile every tenth round) for a long-running
 * process such as the server, so timeouts fire without waiting for a CLI call.
 */
export function startExpiryLoop(
  sandboxes: Sandboxes,
  options: { intervalMs?: number; onExpired?: (expired: Expired[]) => void; onError?: (err: unknown) => void } = {},
): ExpiryLoop {
  const interval = options.intervalMs ?? 10_000;
  let round = 0;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    (async () => {
      if (round++ % 10 === 0) await sandboxes.reconcile();
      const expired = await sandboxes.expire();
      if (expired.length > 0) options.onExpired?.(expired);
    })()
      .catch((err) => options.onError?.(err))
      .finally(() => {
        running = false;
      });
  }, interval);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
