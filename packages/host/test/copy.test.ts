import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { appendFile, chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type RunningAgent, startAgent } from "@tether/agent";
import { type Agent, connect, NotFoundError, TransferUnavailableError } from "@tether/sdk";
import { SandboxCopy, SharedTransferDir, TransferRefusedError } from "../src/index.js";
import { engineSkipReason, TestSandboxes } from "./support/sandboxes.js";

const BUSYBOX = "tether-test/busybox";
const dockerSkip = await engineSkipReason([BUSYBOX]);

/** What an agent would have answered for a staged file of `size` bytes. */
const answered = (size: number) => Promise.resolve({ size, mode: 0o644 });

const sha256 = async (file: string) =>
  createHash("sha256")
    .update(await readFile(file))
    .digest("hex");

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), "tether-copy-test-"));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("tether cp through a docker sandbox's shared directories", { skip: dockerSkip }, () => {
  const t = new TestSandboxes();
  let id: string;
  let runDir: string;
  let shareDir: string;
  before(async () => {
    await t.setup();
    const info = await t.create(BUSYBOX);
    id = info.id;
    assert.ok(info.endpoint?.transferDir, "a runc sandbox on this machine shares run/");
    assert.ok(info.endpoint?.importDir, "and has share/ mounted read-only");
    runDir = info.endpoint.transferDir;
    shareDir = info.endpoint.importDir;
  });
  after(() => t.cleanup());

  /** Nothing staged is left behind in either shared directory. */
  async function assertNothingStaged(): Promise<void> {
    assert.deepEqual(
      (await readdir(runDir)).filter((n) => n.startsWith("tether-xfer-")),
      [],
      "run/ has no staged files",
    );
    assert.deepEqual(await readdir(shareDir), [], "share/ is empty");
  }

  test("a file in and back out without streaming: same bytes, mode kept, nothing left staged", async () => {
    const source = path.join(scratch, "in.bin");
    await writeFile(source, randomBytes(3 << 20));
    await chmod(source, 0o751);
    const copy = await t.sandboxes.copier(id);
    try {
      await copy.in(source, "/tmp/in.bin");
      const back = path.join(scratch, "back.bin");
      await copy.out("/tmp/in.bin", back);
      assert.equal(copy.streamedBecause, undefined, "both ways went through the shared directories");
      assert.equal(await sha256(back), await sha256(source));
      assert.equal((await stat(back)).mode & 0o7777, 0o751);
      const inside = await copy.agent.files.stat("/tmp/in.bin");
      assert.equal(inside.mode & 0o7777, 0o751);
      assert.equal(inside.size, 3 << 20);
      // The sandbox cannot write to what is staged for it: share/ is read-only in there.
      const staged = path.join(shareDir, "probe");
      await writeFile(staged, "host\n");
      const write = await copy.agent.commands.run(["sh", "-c", "echo x > /run/tether-share/probe"], {
        reject: false,
      });
      assert.notEqual(write.exitCode, 0, "writing into /run/tether-share fails inside the sandbox");
      assert.equal(await readFile(staged, "utf8"), "host\n");
      await rm(staged);
    } finally {
      copy.close();
    }
    await assertNothingStaged();
  });

  test("a directory tree in and out, every file through the shared directories", async () => {
    const tree = path.join(scratch, "tree");
    await mkdir(path.join(tree, "sub", "deeper"), { recursive: true });
    await writeFile(path.join(tree, "a.txt"), "alpha\n");
    await writeFile(path.join(tree, "sub", "b.bin"), randomBytes(100_000));
    await writeFile(path.join(tree, "sub", "deeper", "c.txt"), "");
    const copy = await t.sandboxes.copier(id);
    try {
      await copy.in(tree, "/data");
      const out = path.join(scratch, "tree-out");
      await copy.out("/data", out);
      assert.equal(copy.streamedBecause, undefined);
      for (const rel of ["a.txt", "sub/b.bin", "sub/deeper/c.txt"]) {
        assert.equal(await sha256(path.join(out, rel)), await sha256(path.join(tree, rel)), rel);
      }
    } finally {
      copy.close();
    }
    await assertNothingStaged();
  });

  test("failures leave nothing staged: a missing source in the sandbox, a target under a file", async () => {
    const copy = await t.sandboxes.copier(id);
    try {
      await assert.rejects(copy.out("/no/such/file", path.join(scratch, "never")), NotFoundError);
      const source = path.join(scratch, "small.txt");
      await writeFile(source, "small\n");
      await assert.rejects(copy.in(source, "/etc/passwd/under-a-file"));
      assert.equal(copy.streamedBecause, undefined, "a real error is not a reason to stream");
    } finally {
      copy.close();
    }
    await assertNothingStaged();
    await assert.rejects(stat(path.join(scratch, "never")), { code: "ENOENT" });
  });

  test("a directory the sandbox does not see: the copy streams instead, and says why", async () => {
    const agent = await t.connect(id);
    const elsewhere = await mkdtemp(path.join(scratch, "not-shared-"));
    const copy = new SandboxCopy(agent, { transferDir: elsewhere, importDir: elsewhere });
    const source = path.join(scratch, "streamed.bin");
    await writeFile(source, randomBytes(1 << 20));
    await copy.in(source, "/tmp/streamed.bin");
    assert.match(copy.streamedBecause ?? "", /staged file .* cannot be opened/);
    const back = path.join(scratch, "streamed-back.bin");
    await copy.out("/tmp/streamed.bin", back);
    assert.equal(await sha256(back), await sha256(source));
    assert.deepEqual(await readdir(elsewhere), [], "the staged file was removed");
    const none = new SandboxCopy(agent);
    await none.out("/tmp/streamed.bin", back);
    assert.equal(none.streamedBecause, "no directory is shared with the sandbox");
  });
});

describe("the host's side of a shared directory, with the test as the sandbox", () => {
  let agent: RunningAgent;
  let client: Agent;
  let runDir: string;
  let shared: SharedTransferDir;
  const secret = () => path.join(scratch, "host-secret.txt");
  before(async () => {
    runDir = await mkdtemp(path.join(scratch, "run-"));
    agent = await startAgent({
      port: false,
      socket: path.join(runDir, "agent.sock"),
      accessToken: "copy-test-token",
      transferDir: runDir,
      logLevel: "silent",
    });
    client = await connect({ socket: path.join(runDir, "agent.sock"), accessToken: "copy-test-token" });
    shared = new SharedTransferDir(runDir);
    await writeFile(secret(), "host only\n");
  });
  after(async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    client.close();
    await agent.close();
  });

  test("a staged file swapped for a symlink is refused, and nothing is written", async () => {
    const name = shared.newName();
    await symlink(secret(), path.join(runDir, name));
    const destination = path.join(scratch, "from-link.txt");
    await assert.rejects(shared.take(name, answered(10), destination), TransferRefusedError);
    await assert.rejects(stat(destination), { code: "ENOENT" });
    assert.deepEqual(
      (await readdir(scratch)).filter((n) => n.endsWith(".tether-copy")),
      [],
      "no temp file is left beside the destination",
    );
    await shared.remove(name);
    assert.equal(await readFile(secret(), "utf8"), "host only\n", "the link's target is untouched");
    assert.ok(!(await readdir(runDir)).includes(name));
  });

  test("a FIFO or a directory under a staged name is refused without blocking", async () => {
    const fifo = shared.newName();
    execFileSync("mkfifo", [path.join(runDir, fifo)]);
    await assert.rejects(shared.take(fifo, answered(0), path.join(scratch, "fifo-out")), TransferRefusedError);
    await shared.remove(fifo);
    const dir = shared.newName();
    await mkdir(path.join(runDir, dir));
    await assert.rejects(shared.take(dir, answered(0), path.join(scratch, "dir-out")), TransferRefusedError);
    await rm(path.join(runDir, dir), { recursive: true });
  });

  test("a staged file of another size than the agent reported means the directory is not shared", async () => {
    const name = shared.newName();
    await writeFile(path.join(runDir, name), "short\n");
    await assert.rejects(shared.take(name, answered(1000), path.join(scratch, "short-out")), TransferUnavailableError);
    await shared.remove(name);
  });

  test("the host copies while the staged file is still being written, and refuses one that grows past the answer", async () => {
    const name = shared.newName();
    const parts = [randomBytes(300_000), randomBytes(5), randomBytes(700_000)];
    const destination = path.join(scratch, "followed.bin");
    // The test plays the agent: the file appears late and grows in steps before the answer.
    const writer = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      for (const part of parts) {
        await appendFile(path.join(runDir, name), part);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return { size: 1_000_005, mode: 0o600 };
    })();
    await shared.take(name, writer, destination);
    assert.deepEqual(await readFile(destination), Buffer.concat(parts));
    assert.equal((await stat(destination)).mode & 0o777, 0o600);
    await shared.remove(name);

    // A sandbox appending without end: refused once the answer is in, not copied forever.
    const endless = shared.newName();
    await writeFile(path.join(runDir, endless), "x");
    let appending = true;
    const appender = (async () => {
      while (appending) await appendFile(path.join(runDir, endless), randomBytes(64 << 10));
    })();
    await assert.rejects(
      shared.take(
        endless,
        new Promise((resolve) => setTimeout(() => resolve({ size: 1, mode: 0o600 }), 50)),
        path.join(scratch, "endless-out"),
      ),
      TransferRefusedError,
    );
    appending = false;
    await appender;
    await shared.remove(endless);
    await assert.rejects(stat(path.join(scratch, "endless-out")), { code: "ENOENT" });

    const grown = shared.newName();
    await writeFile(path.join(runDir, grown), "more than said\n");
    await assert.rejects(shared.take(grown, answered(4), path.join(scratch, "grown-out")), TransferRefusedError);
    await assert.rejects(stat(path.join(scratch, "grown-out")), { code: "ENOENT" });
    await shared.remove(grown);
  });

  test("sweep removes staged leftovers older than the limit, and nothing else", async () => {
    const old = shared.newName();
    await writeFile(path.join(runDir, old), "left by a dead host\n");
    await writeFile(path.join(runDir, "not-ours.txt"), "kept\n");
    await new Promise((resolve) => setTimeout(resolve, 30));
    const fresh = shared.newName();
    await writeFile(path.join(runDir, fresh), "in use\n");
    await shared.sweep(20);
    const left = await readdir(runDir);
    assert.ok(!left.includes(old), "the old staged file is gone");
    assert.ok(left.includes(fresh), "a staged file newer than the limit stays");
    assert.ok(left.includes("not-ours.txt"), "names we did not hand out are never touched");
    await shared.remove(fresh);
    await rm(path.join(runDir, "not-ours.txt"));
  });

  test("the shared directory itself replaced by a symlink is refused", async () => {
    const swapped = path.join(scratch, "swapped-run");
    await symlink(scratch, swapped);
    const bad = new SharedTransferDir(swapped);
    await assert.rejects(bad.take(bad.newName(), answered(1), path.join(scratch, "x")), TransferRefusedError);
  });

  test("the agent copies in from a staged file and out into one, through its endpoints", async () => {
    const source = path.join(scratch, "agent-in.bin");
    await writeFile(source, randomBytes(200_000));
    const name = shared.newName();
    const size = await shared.stage(source, name);
    const target = path.join(scratch, "agent-target", "in.bin");
    const written = await client.files.importStaged(name, target, { size, mode: 0o640 });
    assert.equal(written.size, 200_000);
    assert.equal(await sha256(target), await sha256(source));
    assert.equal((await stat(target)).mode & 0o7777, 0o640);
    await shared.remove(name);

    const out = shared.newName();
    const exported = await client.files.exportStaged(target, out);
    assert.equal(exported.mode, 0o640);
    assert.equal(((await stat(path.join(runDir, out))).mode & 0o777).toString(8), "600");
    const back = path.join(scratch, "agent-back.bin");
    await shared.take(out, Promise.resolve(exported), back);
    await shared.remove(out);
    assert.equal(await sha256(back), await sha256(source));
    assert.deepEqual(
      (await readdir(runDir)).filter((n) => n.startsWith("tether-xfer-")),
      [],
    );
  });

  test("the agent refuses a staged symlink, a name it did not hand out, and calls without the token", async () => {
    const name = shared.newName();
    await symlink(secret(), path.join(runDir, name));
    const target = path.join(scratch, "never-imported.txt");
    await assert.rejects(client.files.importStaged(name, target, { size: 10 }), TransferUnavailableError);
    await assert.rejects(stat(target), { code: "ENOENT" });
    await shared.remove(name);

    await assert.rejects(client.files.importStaged("../host-secret.txt", target, { size: 10 }), /staged is not a name/);
    await assert.rejects(client.files.exportStaged(secret(), "agent.sock"), /staged is not a name/);

    const anonymous = await connect({ socket: path.join(runDir, "agent.sock") });
    try {
      await assert.rejects(anonymous.files.exportStaged(secret(), shared.newName()), /access token/);
    } finally {
      anonymous.close();
    }
    assert.deepEqual(
      (await readdir(runDir)).filter((n) => n.startsWith("tether-xfer-")),
      [],
    );
  });
});
