/**
 * The e2b SDK against `tether serve` with a vm template: the sandbox is a QEMU microVM of
 * the Debian test image (under TCG here: tens of seconds to boot, so one VM does it all:
 * commands, files, a pty, pause with memory and resume, a fork restored from its memory).
 */
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { findVmTools, VmToolsMissingError } from "@tether/host";
import { CommandExitError, Sandbox } from "e2b";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

async function vmSkipReason(): Promise<string | undefined> {
  try {
    await findVmTools();
    return undefined;
  } catch (err) {
    if (!(err instanceof VmToolsMissingError)) throw err;
    if (process.env.CI === "true") throw new Error(`CI needs the vm backend's tools: ${err.message}`);
    console.log(`# skipping the vm server test: ${err.message}`);
    return err.message;
  }
}

const skip = (await vmSkipReason()) ?? (await dockerSkipReason([DEBIAN]));
const t = new TestServer();
/** Booting, pausing and forking under TCG on a loaded machine: minutes, not the SDK's 60 s. */
const SLOW = { requestTimeoutMs: 600_000 };

before(async () => {
  if (skip) return;
  await t.start();
  const { key } = t.server.keys.create({ team: "alpha" });
  t.server.templates.put("debian-vm", DEBIAN, { backend: "vm", memoryMB: 384 });
  process.env.E2B_API_URL = t.url;
  process.env.E2B_SANDBOX_URL = t.url;
  process.env.E2B_API_KEY = key;
});
after(async () => {
  if (!skip) await t.close();
});

test("a vm template: commands, files and a pty in a microVM; pause keeps its memory; a fork restores it", {
  skip,
}, async () => {
  const sandbox = await Sandbox.create("debian-vm", { ...SLOW, timeoutMs: 900_000 });
  const made: Sandbox[] = [sandbox];
  try {
    const info = await t.sandboxes.get(sandbox.sandboxId);
    assert.equal(info.backend, "vm");
    const kernel = await sandbox.commands.run("uname -r; cut -c1-2 /etc/debian_version");
    const [release, debian] = kernel.stdout.split("\n");
    assert.equal(release, (await findVmTools()).kernel.version, "the guest's own kernel");
    assert.match(debian, /^\d+$/);
    const failed = await sandbox.commands.run("exit 7").catch((e: unknown) => e);
    assert.ok(failed instanceof CommandExitError);
    assert.equal(failed.exitCode, 7);

    await sandbox.files.write("/root/state.txt", "in the vm");
    assert.equal(await sandbox.files.read("/root/state.txt"), "in the vm");
    assert.deepEqual(
      (await sandbox.files.list("/root")).map((e) => e.name).filter((n) => n === "state.txt"),
      ["state.txt"],
    );

    let screen = "";
    const pty = await sandbox.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => {
        screen += Buffer.from(d).toString();
      },
    });
    await sandbox.pty.sendInput(pty.pid, Buffer.from("echo pty-$((6*7))\nexit\n"));
    await pty.wait().catch(() => undefined);
    assert.match(screen, /pty-42/);

    // Pause writes the VM's memory to disk and ends QEMU; connect restores it.
    const sleeper = await sandbox.commands.run("sleep 600", { background: true, timeoutMs: 0 });
    assert.equal(await sandbox.pause(SLOW), true);
    assert.equal((await sandbox.getInfo()).state, "paused");
    const snapshot = await stat(path.join(t.home, "sandboxes", sandbox.sandboxId, "snapshot"));
    assert.ok(snapshot.size > 0, "the memory is on disk");
    const again = await Sandbox.connect(sandbox.sandboxId, { ...SLOW, timeoutMs: 900_000 });
    assert.equal((await again.getInfo()).state, "running");
    const pids = (await again.commands.list()).map((p) => p.pid);
    assert.ok(pids.includes(sleeper.pid), `the sleep (pid ${sleeper.pid}) survived: ${pids.join(", ")}`);

    // A fork is a memory snapshot restored: the sleep goes on in it too, on another machine-id.
    const forks = await again.fork({ ...SLOW, count: 1 });
    assert.equal(forks.length, 1);
    const [fork] = forks;
    assert.ok(fork instanceof Sandbox, String(fork));
    made.push(fork);
    assert.equal((await t.sandboxes.get(fork.sandboxId)).backend, "vm");
    assert.equal(await fork.files.read("/root/state.txt"), "in the vm");
    const forkPids = (await fork.commands.list()).map((p) => p.pid);
    assert.ok(forkPids.includes(sleeper.pid), `the fork has the sleep (pid ${sleeper.pid}): ${forkPids.join(", ")}`);
    const ids = await Promise.all(
      [again, fork].map(async (s) => (await s.commands.run("cat /etc/machine-id 2>/dev/null || true")).stdout),
    );
    assert.notEqual(ids[0], ids[1]);
    assert.match(ids[1], /^[0-9a-f]{32}\n$/);
    // The source still runs after its snapshot was taken.
    assert.equal((await again.commands.run("echo still running")).stdout, "still running\n");
  } finally {
    await Promise.all(made.map((s) => s.kill().catch(() => false)));
  }
});
