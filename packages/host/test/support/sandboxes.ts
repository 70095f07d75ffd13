import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type BuiltBundle, buildBundle } from "@tether/bundle";
import type { Agent } from "@tether/sdk";
import Docker from "dockerode";
import {
  type CreateOptions,
  type DockerBackendOptions,
  removeHome,
  Sandboxes,
  type SandboxInfo,
} from "../../src/index.js";

/** Test bundles live here, shared with other test processes (one per content hash). */
const TEST_BUNDLE_ROOT = path.join(os.tmpdir(), "tether-test-bundles");
/** The label every container a host test creates carries, with a value unique to the test file run. */
export const TEST_LABEL = "tether-test.host";

let bundle: Promise<BuiltBundle> | undefined;

/** The bundle of the agent as compiled now, built once per process (reused across processes). */
export function testBundle(): Promise<BuiltBundle> {
  bundle ??= buildBundle({ root: TEST_BUNDLE_ROOT });
  return bundle;
}

/** DockerBackend options for the test bundle: built, used and pruned under the shared test root. */
export const TEST_BUNDLE = { bundle: testBundle, bundleRoot: TEST_BUNDLE_ROOT };

/**
 * Why engine-backed tests cannot run, or undefined when they can. In CI (CI=true) the
 * engine must be there: this throws instead of giving a reason to skip.
 */
export async function engineSkipReason(images: readonly string[], docker = new Docker()): Promise<string | undefined> {
  let reason: string | undefined;
  try {
    await docker.ping();
    const missing: string[] = [];
    for (const image of images) {
      if (
        !(await docker
          .getImage(image)
          .inspect()
          .catch(() => undefined))
      )
        missing.push(image);
    }
    if (missing.length > 0) reason = `test images ${missing.join(", ")} are missing: run bash scripts/test-images.sh`;
  } catch (err) {
    reason = `Docker is not usable (start it with bash scripts/start-dockerd.sh): ${(err as Error).message}`;
  }
  if (reason && process.env.CI === "true") throw new Error(`CI needs Docker for these tests: ${reason}`);
  if (reason) console.log(`# skipping Docker-backed host tests: ${reason}`);
  return reason;
}

/** A Sandboxes facade over a scratch TETHER_HOME whose sandboxes all carry this run's test label. */
export class TestSandboxes {
  readonly run = randomUUID();
  readonly docker: Docker;
  sandboxes!: Sandboxes;
  home!: string;
  private readonly agents: Agent[] = [];

  constructor(private readonly options: Omit<DockerBackendOptions, "home" | "bundle"> = {}) {
    this.docker = options.docker ?? new Docker();
  }

  async setup(): Promise<this> {
    this.home = await mkdtemp(path.join(os.tmpdir(), "tether-host-test-"));
    this.sandboxes = new Sandboxes({
      docker: { ...this.options, docker: this.docker, home: this.home, ...TEST_BUNDLE },
    });
    return this;
  }

  /** Creates a sandbox labelled as this run's. */
  create(image: string, options: CreateOptions = {}): Promise<SandboxInfo> {
    return this.sandboxes.create(image, { ...options, labels: { ...options.labels, [TEST_LABEL]: this.run } });
  }

  /** Connects to a sandbox's agent; closed in cleanup. */
  async connect(id: string, user?: string): Promise<Agent> {
    const agent = await this.sandboxes.connect(id, { user });
    this.agents.push(agent);
    return agent;
  }

  /** Containers of this run, as the engine lists them. */
  containers(): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${this.run}`] } });
  }

  /** Directories under $TETHER_HOME/sandboxes. */
  async sandboxDirs(): Promise<string[]> {
    return readdir(path.join(this.home, "sandboxes")).catch(() => []);
  }

  /** The sandbox's logs as text (stdout and stderr together). */
  async logs(id: string): Promise<string> {
    let text = "";
    for await (const chunk of this.sandboxes.logs(id)) text += chunk.data.toString("utf8");
    return text;
  }

  /** Removes every container of this run (only those) and the scratch home. */
  async cleanup(): Promise<void> {
    // A file read's HTTP/2 stream closes a tick after its body ends; an SDK close() before
    // that (session.abort) raises an error on it with no listener left: an uncaught exception.
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (const agent of this.agents) agent.close();
    for (const c of await this.containers().catch(() => [])) {
      await this.docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => {});
    }
    if (this.home) await removeHome(this.home);
  }
}

/** Polls `check` until it returns a value (not undefined), up to `attempts` x 100 ms. */
export async function eventually<T>(check: () => Promise<T | undefined>, what: string, attempts = 100): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Builds a small image FROM a local one with extra Dockerfile lines, through the Engine API; kept once built. */
export async function deriveImage(docker: Docker, tag: string, from: string, lines: string[]): Promise<string> {
  const tar = (await import("tar-stream")).default;
  const pack = tar.pack();
  pack.entry({ name: "Dockerfile" }, `FROM ${from}\n${lines.join("\n")}\n`);
  pack.finalize();
  const stream = await docker.buildImage(pack as unknown as NodeJS.ReadableStream, { t: tag, rm: true, forcerm: true });
  const output = await new Promise<{ error?: string }[]>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, res: { error?: string }[]) =>
      err ? reject(err) : resolve(res),
    ),
  );
  const failed = output.find((e) => e.error);
  if (failed) throw new Error(`building ${tag} failed: ${failed.error}`);
  return tag;
}

/**
 * Copies `size` random bytes into a sandbox and back out with tether cp's copier, and
 * checks they came back the same through the shared directories (not streamed).
 */
export async function assertSharedCopyRoundTrip(sandboxes: Sandboxes, id: string, size: number): Promise<void> {
  const scratch = await mkdtemp(path.join(os.tmpdir(), "tether-copy-round-trip-"));
  const copy = await sandboxes.copier(id);
  try {
    const source = path.join(scratch, "in.bin");
    const bytes = randomBytes(size);
    await writeFile(source, bytes);
    await copy.in(source, "/tmp/copied.bin");
    await copy.out("/tmp/copied.bin", path.join(scratch, "out.bin"));
    assert.equal(copy.streamedBecause, undefined);
    assert.ok((await readFile(path.join(scratch, "out.bin"))).equals(bytes));
  } finally {
    copy.close();
    await rm(scratch, { recursive: true, force: true });
  }
}
