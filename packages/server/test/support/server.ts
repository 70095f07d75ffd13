import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type BuiltBundle, buildBundle } from "@tether/bundle";
import { dockerStatus, removeHome, Sandboxes } from "@tether/host";
import { pino } from "pino";
import { openServerDatabase, type RunningServer, type ServerOptions, startServer, Templates } from "../../src/index.js";

/** Test bundles live here, shared with other test processes (one per content hash), as the host tests do. */
const TEST_BUNDLE_ROOT = path.join(os.tmpdir(), "tether-test-bundles");
/** The vm backend's disks and initramfs, shared with the host's vm tests (each is named by its content). */
export const VM_CACHE_DIR = path.join(os.tmpdir(), "tether-test-vm-cache");
export const DEBIAN = "tether-test/debian";
export const BUSYBOX = "tether-test/busybox";

let bundle: Promise<BuiltBundle> | undefined;
function testBundle(): Promise<BuiltBundle> {
  bundle ??= buildBundle({ root: TEST_BUNDLE_ROOT });
  return bundle;
}

/**
 * Why Docker-backed server tests cannot run, or undefined when they can. In CI the
 * engine must be there: this throws instead.
 */
export async function dockerSkipReason(images: readonly string[] = [DEBIAN]): Promise<string | undefined> {
  let reason: string | undefined;
  const status = await dockerStatus();
  if (!status.available) {
    reason = `Docker is not usable (start it with bash scripts/start-dockerd.sh): ${status.reason ?? "unknown"}`;
  } else {
    const { default: Docker } = await import("dockerode");
    const docker = new Docker();
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
  }
  if (reason && process.env.CI === "true") throw new Error(`CI needs Docker for these tests: ${reason}`);
  if (reason) console.log(`# skipping Docker-backed server tests: ${reason}`);
  return reason;
}

/** A `tether serve` in this process over a scratch TETHER_HOME, on a free loopback port. */
export class TestServer {
  home!: string;
  sandboxes!: Sandboxes;
  server!: RunningServer;

  async start(options: Omit<ServerOptions, "sandboxes" | "port" | "logger"> = {}, home?: string): Promise<this> {
    this.home = home ?? (await mkdtemp(path.join(os.tmpdir(), "tether-server-test-")));
    this.sandboxes = new Sandboxes({
      docker: { home: this.home, bundle: testBundle, bundleRoot: TEST_BUNDLE_ROOT },
      vm: { cacheDir: VM_CACHE_DIR },
    });
    this.server = await startServer({
      ...options,
      sandboxes: this.sandboxes,
      port: 0,
      logger: pino({ level: process.env.TETHER_TEST_LOG ?? "warn" }, pino.destination(2)),
      expiryIntervalMs: 500,
    });
    return this;
  }

  get url(): string {
    return this.server.url;
  }

  /** Stops the server only: its sandboxes keep running (for restart tests). */
  async stop(): Promise<void> {
    await this.server.close();
    this.sandboxes.close();
  }

  /** Stops the server, removes every sandbox of this home, and the home. */
  async close(): Promise<void> {
    await this.server.close().catch(() => {});
    const all = await this.sandboxes.list({ states: ["creating", "running", "paused", "stopped", "error"] });
    await Promise.all(all.map((s) => this.sandboxes.remove(s.id).catch(() => {})));
    // Snapshots are images: the ones this server made go with it.
    const db = openServerDatabase(this.home);
    try {
      for (const t of new Templates(db).list()) {
        if (t.image.startsWith("tether-snapshot/"))
          await this.sandboxes.removeSnapshot(t.image, t.defaults.backend ?? "docker").catch(() => {});
      }
    } finally {
      db.close();
    }
    this.sandboxes.close();
    await removeHome(this.home);
  }
}
