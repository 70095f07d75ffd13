import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  appendFile,
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  statfs,
  symlink,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type RunningAgent, startAgent } from "@tether/agent";
import { type Agent, connect, NotFoundError, TransferUnavailableError } from "@tether/sdk";
import { SandboxCopy, SharedTransferDir, TransferRefusedError, UnsafeEntryError } from "../src/index.js";
import { HostileAgent } from "./support/hostile-agent.js";
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

  test("the sandbox can fill its host directory only up to a bound (a tmpfs on run/)", async () => {
    const agent = await t.connect(id);
    try {
      const fill = await agent.commands.run(["dd", "if=/dev/zero", "of=/run/tether/fill", "bs=1M", "count=1100"], {
        reject: false,
      });
      assert.notEqual(fill.exitCode, 0, "writing 1100 MiB into /run/tether fails");
      assert.match(fill.stderr, /No space left on device/);
      const size = (await stat(path.join(runDir, "fill"))).size;
      assert.ok(size <= 1 << 30, `the sandbox wrote ${size} bytes, at most 1 GiB`);
      const fs = await statfs(runDir);
      assert.ok(fs.blocks * fs.bsize <= 1 << 30, "run/ is a filesystem of at most 1 GiB on the host");
    } finally {
      await rm(path.join(runDir, "fill"), { force: true });
      agent.close();
    }
  });

  // Last: it leaves the sandbox's own agent.sock replaced.
  test("root in the sandbox renaming its own socket over agent.sock: the host still reaches its agent, the impostor gets nothing", async () => {
    const hostile = new HostileAgent(path.join(runDir, "impostor.sock"));
    await hostile.listen();
    try {
      const agent = await t.connect(id);
      try {
        const mv = await agent.commands.run(["mv", "/run/tether/impostor.sock", "/run/tether/agent.sock"]);
        assert.equal(mv.exitCode, 0);
      } finally {
        agent.close();
      }
      hostile.stats.set("/etc/hostname", { name: "hostname", type: "file", path: "/etc/hostname" });
      const copy = await t.sandboxes.copier(id);
      try {
        const out = path.join(scratch, "hostname-out");
        await copy.out("/etc/hostname", out);
        const real = await copy.agent.commands.run(["cat", "/etc/hostname"]);
        assert.equal(await readFile(out, "utf8"), real.stdout, "the file came from the real agent");
      } finally {
        copy.close();
      }
      assert.deepEqual([...hostile.tokensSeen], [], "the impostor was never sent the token");
    } finally {
      await hostile.close();
    }
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

  for (const via of ["streamed", "shared"] as const) {
    test(`copying out twice never writes through a link in the destination (${via})`, async () => {
      const copier = () => new SandboxCopy(client, via === "shared" ? { transferDir: runDir } : {});
      const box = await mkdtemp(path.join(scratch, "box-"));
      const victim = await mkdtemp(path.join(scratch, "victim-"));
      await writeFile(path.join(victim, "f"), "host only\n");
      const dest = await mkdtemp(path.join(scratch, "dest-"));
      // The sandbox's tree: a link leaving it, one inside it, and a file.
      const out = path.join(box, "out");
      await mkdir(path.join(out, "sub"), { recursive: true });
      await symlink(victim, path.join(out, "a"));
      await symlink("sub", path.join(out, "in"));
      await writeFile(path.join(out, "f"), "from the sandbox\n");
      const first = copier();
      await first.out(out, dest);
      assert.equal(await readlink(path.join(dest, "out", "in")), "sub", "a link inside the tree stays, relative");
      await assert.rejects(lstat(path.join(dest, "out", "a")), { code: "ENOENT" });
      assert.ok(
        first.warnings.some((w) =>
          w.includes(`${path.join(out, "a")}: a symlink to ${victim}, outside the copied tree`),
        ),
        first.warnings.join("\n"),
      );

      // The sandbox turns the link into a directory with a file; the host planted (or an
      // older tether made) a link to the victim under that name, and one at the file.
      await rm(path.join(out, "a"));
      await mkdir(path.join(out, "a"));
      await writeFile(path.join(out, "a", "f"), "planted\n");
      await symlink(victim, path.join(dest, "out", "a"));
      await rm(path.join(dest, "out", "f"));
      await symlink(path.join(victim, "f"), path.join(dest, "out", "f"));
      await assert.rejects(copier().out(out, dest), UnsafeEntryError);
      assert.deepEqual(await readdir(victim), ["f"], "nothing was written into the link's target");
      assert.equal(await readFile(path.join(victim, "f"), "utf8"), "host only\n");

      // The in-tree link turned into a directory: refused too, nothing written into sub/.
      await rm(path.join(dest, "out", "a"));
      await rm(path.join(out, "in"));
      await mkdir(path.join(out, "in"));
      await writeFile(path.join(out, "in", "g"), "through the link\n");
      await assert.rejects(copier().out(out, dest), UnsafeEntryError);
      assert.deepEqual(await readdir(path.join(dest, "out", "sub")), []);
      // Once nothing in the way is a link: a file copied over a link replaces the link,
      // whose target keeps its bytes, and the directory is a real one.
      await rm(path.join(dest, "out", "in"));
      await copier().out(out, dest);
      assert.equal(await readFile(path.join(dest, "out", "a", "f"), "utf8"), "planted\n");
      assert.equal(await readFile(path.join(dest, "out", "f"), "utf8"), "from the sandbox\n");
      assert.ok((await lstat(path.join(dest, "out", "f"))).isFile());
      assert.equal(await readFile(path.join(victim, "f"), "utf8"), "host only\n");
    });
  }

  test("a file staged in the read-only share is a copy: the sandbox never sees the host's later edits", async () => {
    const share = await mkdtemp(path.join(scratch, "share-"));
    const staging = new SharedTransferDir(runDir, share);
    const source = path.join(scratch, "edited-later.txt");
    await writeFile(source, "before\n");
    const name = staging.newName();
    await staging.stage(source, name);
    // The sandbox keeps a descriptor to what was staged; the host then edits its file in place.
    const held = await open(path.join(share, name), "r");
    try {
      const edit = await open(source, "r+");
      await edit.write("after!\n", 0);
      await edit.close();
      const { bytesRead, buffer } = await held.read(Buffer.alloc(64), 0, 64, 0);
      assert.equal(buffer.subarray(0, bytesRead).toString(), "before\n");
      assert.notEqual((await stat(path.join(share, name))).ino, (await stat(source)).ino);
    } finally {
      await held.close();
      await staging.remove(name);
    }
  });
});

describe("copies out of an agent that answers what it likes", () => {
  let hostile: HostileAgent;
  let client: Agent;
  before(async () => {
    const dir = await mkdtemp(path.join(scratch, "hostile-"));
    hostile = new HostileAgent(path.join(dir, "agent.sock"));
    await hostile.listen();
    client = await connect({ socket: hostile.socket, accessToken: "hostile-test-token" });
  });
  after(async () => {
    client.close();
    await hostile.close();
  });

  for (const evil of ["../../escaped", "..", ".", "a/b", "nul\0", ""]) {
    test(`an entry named ${JSON.stringify(evil)} fails the copy, and nothing is written outside the destination`, async () => {
      const dest = await mkdtemp(path.join(scratch, "evil-dest-"));
      hostile.stats.set("/out", { name: "out", type: "dir", path: "/out" });
      hostile.listings.set("/out", [{ name: evil, type: "file", path: "/out/x" }]);
      await assert.rejects(new SandboxCopy(client).out("/out", dest), UnsafeEntryError);
      await assert.rejects(stat(path.join(scratch, "escaped")), { code: "ENOENT" });
      assert.deepEqual(await readdir(path.join(dest, "out")), [], "nothing was written");
    });
  }

  test("links it reports outside the tree are not made; modes lose setuid; names in the tree are kept", async () => {
    const dest = await mkdtemp(path.join(scratch, "links-dest-"));
    hostile.stats.set("/out", { name: "out", type: "dir", path: "/out" });
    hostile.listings.set("/out", [
      { name: "abs", type: "file", path: "/out/abs", symlinkTarget: "/etc/passwd" },
      { name: "dots", type: "file", path: "/out/dots", symlinkTarget: "/out/../../etc/passwd" },
      { name: "rel", type: "file", path: "/out/rel", symlinkTarget: "../etc/passwd" },
      { name: "inside", type: "file", path: "/out/inside", symlinkTarget: "/out/suid" },
      { name: "suid", type: "file", path: "/out/suid", mode: 0o4755 },
    ]);
    const copy = new SandboxCopy(client);
    await copy.out("/out", dest);
    assert.deepEqual((await readdir(path.join(dest, "out"))).sort(), ["inside", "suid"]);
    assert.equal(await readlink(path.join(dest, "out", "inside")), "suid");
    assert.equal((await stat(path.join(dest, "out", "suid"))).mode & 0o7777, 0o755);
    assert.equal(copy.warnings.length, 3, copy.warnings.join("\n"));
  });
});
