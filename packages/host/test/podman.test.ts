import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import Docker from "dockerode";
import { detectEngine, ImageNotFoundError, SandboxNotFoundError, SandboxStartError } from "../src/index.js";
import { assertSharedCopyRoundTrip, eventually, TestSandboxes } from "./support/sandboxes.js";

/** Podman's Docker-compatible socket, as started by scripts/start-podman.sh. */
const SOCKET = process.env.TETHER_TEST_PODMAN_SOCKET ?? "/tmp/podman.sock";
const IMAGES = ["tether-test/busybox", "tether-test/noshell"];
const podman = new Docker({ socketPath: SOCKET });

async function podmanSkipReason(): Promise<string | undefined> {
  let reason: string | undefined;
  try {
    const engine = await detectEngine(podman);
    if (engine.kind !== "podman") reason = `${SOCKET} is ${engine.kind}, not Podman`;
    for (const image of IMAGES) {
      if (
        !reason &&
        !(await podman
          .getImage(image)
          .inspect()
          .catch(() => undefined))
      ) {
        reason = `Podman lacks ${image} (bash scripts/start-podman.sh copies the test images)`;
      }
    }
  } catch (err) {
    reason = `no Podman API at ${SOCKET} (bash scripts/start-podman.sh starts one): ${(err as Error).message}`;
  }
  if (reason && process.env.CI === "true") throw new Error(`CI needs Podman for these tests: ${reason}`);
  if (reason) console.log(`# skipping Podman tests: ${reason}`);
  return reason;
}

const skip = await podmanSkipReason();
const t = new TestSandboxes({ docker: podman });
before(async () => {
  if (!skip) await t.setup();
});
after(() => t.cleanup());

describe("the Docker backend against Podman's compatible API", { skip }, () => {
  test("is detected as Podman, with catatonit as init", async () => {
    const engine = await detectEngine(podman);
    assert.equal(engine.kind, "podman");
    assert.equal(engine.strategy.initName, "catatonit");
  });

  test("creates a sandbox: exec and file round trip, the image's command supervised, catatonit as PID 1", async () => {
    const info = await t.create("tether-test/busybox", { command: ["sh", "-c", "echo from-podman-cmd"] });
    assert.equal(info.state, "running");
    const agent = await t.connect(info.id);
    assert.equal((await agent.commands.run(["echo", "hello", "podman"])).stdout, "hello podman\n");
    const init = await agent.commands.run(["cat", "/proc/1/cmdline"]);
    assert.match(init.stdout, /^\/run\/podman-init\0--\0\/\.tether\/lib\/ld-linux/);
    const bytes = randomBytes(64 * 1024 + 5);
    await agent.files.write("/tmp/podman.bin", bytes);
    assert.ok(Buffer.from(await agent.files.read("/tmp/podman.bin", { format: "bytes" })).equals(bytes));
    await eventually(
      async () => (/from-podman-cmd/.test(await t.logs(info.id)) ? true : undefined),
      "the command's output in the logs",
    );
  });

  test("tether cp's copier goes through the shared directories under Podman: same bytes both ways", async () => {
    const info = await t.create("tether-test/busybox");
    assert.ok(info.endpoint?.transferDir && info.endpoint.importDir);
    await assertSharedCopyRoundTrip(t.sandboxes, info.id, 3 << 20);
  });

  test("runs the shell-less image", async () => {
    const info = await t.create("tether-test/noshell");
    const agent = await t.connect(info.id);
    assert.equal((await agent.commands.run(["/hello", "noshell"])).stdout, "hello noshell\n");
  });

  test("stop, start, pause, unpause, remove", async () => {
    const info = await t.create("tether-test/busybox");
    await t.sandboxes.pause(info.id);
    assert.equal((await t.sandboxes.get(info.id)).state, "paused");
    await t.sandboxes.unpause(info.id);
    await t.sandboxes.stop(info.id);
    assert.equal((await t.sandboxes.get(info.id)).state, "stopped");
    await t.sandboxes.start(info.id);
    const agent = await t.connect(info.id);
    assert.equal((await agent.commands.run(["echo", "again"])).stdout, "again\n");
    await t.sandboxes.remove(info.id);
    await assert.rejects(t.sandboxes.get(info.id), SandboxNotFoundError);
    assert.ok(!(await t.sandboxDirs()).includes(info.id));
  });

  test("a missing image: ImageNotFoundError, nothing left", async () => {
    const [containers, dirs] = [await t.containers(), await t.sandboxDirs()];
    await assert.rejects(t.create("tether-test/not-in-podman:nope"), ImageNotFoundError);
    assert.equal((await t.containers()).length, containers.length);
    assert.deepEqual(await t.sandboxDirs(), dirs);
  });

  test("an agent that exits before it is ready: SandboxStartError with its log lines, nothing left", async () => {
    const [containers, dirs] = [await t.containers(), await t.sandboxDirs()];
    const err = await t.create("tether-test/busybox", { user: "no-such-user" }).catch((e) => e);
    assert.ok(err instanceof SandboxStartError, String(err));
    assert.ok(
      err.logLines.some((l: string) => l.includes("no-such-user")),
      err.logLines.join("\n"),
    );
    assert.equal((await t.containers()).length, containers.length);
    assert.deepEqual(await t.sandboxDirs(), dirs);
  });
});
