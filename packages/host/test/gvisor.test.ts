import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { DockerBackend } from "../src/index.js";
import { assertSharedCopyRoundTrip, engineSkipReason, TestSandboxes } from "./support/sandboxes.js";

const BUSYBOX = "tether-test/busybox";
let skip = await engineSkipReason([BUSYBOX]);
if (!skip) {
  const engine = await new DockerBackend().engine();
  if (!engine.runtimes.includes("runsc")) {
    const reason = `the engine has no runsc runtime (apt-get install runsc, then bash scripts/start-dockerd.sh); it has ${engine.runtimes.join(", ")}`;
    if (process.env.CI === "true") throw new Error(`CI needs gVisor for these tests: ${reason}`);
    console.log(`# skipping gVisor tests: ${reason}`);
    skip = reason;
  }
}

const t = new TestSandboxes();
before(async () => {
  if (!skip) await t.setup();
});
after(() => t.cleanup());

describe("a gVisor sandbox (runsc, network none)", { skip }, () => {
  test("runs commands and round-trips files over the host socket, under gVisor's kernel", async () => {
    const info = await t.create(BUSYBOX, { runtime: "runsc", network: "none" });
    const container = await t.docker.getContainer(info.backendId).inspect();
    assert.equal(container.HostConfig.Runtime, "runsc");
    const agent = await t.connect(info.id);
    const result = await agent.commands.run(["sh", "-c", "echo hello gvisor; ls /sys/class/net"]);
    assert.equal(result.stdout, "hello gvisor\nlo\n");
    // gVisor's sentry logs its own boot messages in place of the host kernel's.
    const dmesg = await agent.commands.run(["dmesg"]);
    assert.match(dmesg.stdout, /gVisor/);
    // gVisor has no pidfd_open: the agent spawns with Node's child_process instead, and says why.
    // The agent writes its log once it is first idle after starting (or at its first warning).
    let logs = "";
    for (const deadline = Date.now() + 5000; Date.now() < deadline && !logs.includes("tetherd listening"); ) {
      logs = (await t.docker.getContainer(info.backendId).logs({ stdout: true, stderr: true })).toString();
      if (!logs.includes("tetherd listening")) await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(logs, /"spawner":"node"/);
    assert.match(logs, /"reason":"pidfd_open: Function not implemented"/);
    const bytes = randomBytes(128 * 1024 + 1);
    await agent.files.write("/tmp/gvisor.bin", bytes);
    assert.ok(Buffer.from(await agent.files.read("/tmp/gvisor.bin", { format: "bytes" })).equals(bytes));
  });

  test("acts for a non-root user under gVisor (no setfsuid, no pidfd_open): files with its rights, children as it", async () => {
    const info = await t.create(BUSYBOX, { runtime: "runsc", network: "none" });
    const agent = await t.connect(info.id);
    await agent.commands.run(["sh", "-c", "mkdir -m 700 /vault && echo secret > /vault/s && mkdir -m 1777 /shared"]);
    await agent.files.write("/shared/mine.txt", "mine", { user: "nobody" });
    const owner = await agent.commands.run(["stat", "-c", "%u:%g", "/shared/mine.txt"]);
    assert.equal(owner.stdout, "65534:65534\n");
    await assert.rejects(agent.files.write("/vault/s", "overwritten", { user: "nobody" }), /permission denied/i);
    await assert.rejects(agent.files.read("/vault/s", { user: "nobody" }), /permission denied/i);
    assert.equal((await agent.commands.run(["cat", "/vault/s"])).stdout, "secret\n");
    const ids = await agent.commands.run(["sh", "-c", "id -u; id -G"], { user: "nobody", cwd: "/" });
    assert.equal(ids.stdout, "65534\n65534\n");
  });

  test("tether cp's copier goes through the shared directories under gVisor too: same bytes both ways", async () => {
    const info = await t.create(BUSYBOX, { runtime: "runsc", network: "none" });
    assert.ok(info.endpoint?.transferDir && info.endpoint.importDir, "runsc's bind mounts are shared here");
    await assertSharedCopyRoundTrip(t.sandboxes, info.id, 5 << 20);
  });

  test("bridge networking is refused when runsc is registered with --network=none", async (ctx) => {
    const engine = await (t.sandboxes.backend as DockerBackend).engine();
    if (!engine.runtimeArgs.runsc?.includes("--network=none")) return ctx.skip("runsc has a network here");
    await assert.rejects(t.create(BUSYBOX, { runtime: "runsc", network: "bridge" }), /use network "none"/);
  });
});
