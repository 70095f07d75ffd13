import assert from "node:assert/strict";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { AuthenticationError, type FilesystemEvent, type Sandbox } from "e2b";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { e2bSandbox } from "./support/e2b.js";

let t: TestAgent;
let sandbox: Sandbox;
let n = 0;
/** A fresh directory per test, so tests never see each other's files. */
const scratch = () => {
  const dir = path.join(t.dir, `case-${++n}`);
  mkdirSync(dir);
  return dir;
};

before(async () => {
  t = await startTestAgent();
  sandbox = await e2bSandbox(t);
});
after(() => t.close());

/** Resolves with the first watch event that matches, collecting everything seen. */
function waitForEvent(match: (e: FilesystemEvent) => boolean) {
  const seen: FilesystemEvent[] = [];
  let found: (e: FilesystemEvent) => void = () => {};
  const promise = new Promise<FilesystemEvent>((resolve) => {
    found = resolve;
  });
  return {
    seen,
    promise,
    onEvent(e: FilesystemEvent) {
      seen.push(e);
      if (match(e)) found(e);
    },
  };
}

test("files.write writes a string and answers the file's info", async () => {
  const file = path.join(scratch(), "hello.txt");
  const info = await sandbox.files.write(file, "hello, tether");
  assert.equal(info.path, file);
  assert.equal(info.name, "hello.txt");
  assert.equal(readFileSync(file, "utf8"), "hello, tether");
});

test("files.write writes bytes, creating parent directories", async () => {
  const file = path.join(scratch(), "a", "b", "data.bin");
  const bytes = new Uint8Array([0, 1, 2, 255, 254, 10, 13]);
  await sandbox.files.write(file, bytes.buffer);
  assert.deepEqual(new Uint8Array(readFileSync(file)), bytes);
});

test("files.write streams a ReadableStream", async () => {
  const file = path.join(scratch(), "streamed.txt");
  const chunks = ["one ", "two ", "three"];
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(new TextEncoder().encode(c));
      controller.close();
    },
  });
  const info = await sandbox.files.write(file, stream);
  assert.equal(info.path, file);
  assert.equal(readFileSync(file, "utf8"), "one two three");
});

test("files.write writes several files at once", async () => {
  const dir = scratch();
  const infos = await sandbox.files.write([
    { path: path.join(dir, "x.txt"), data: "x" },
    { path: path.join(dir, "sub", "y.txt"), data: new Blob(["why"]) },
  ]);
  assert.deepEqual(infos.map((i) => i.path).sort(), [path.join(dir, "sub", "y.txt"), path.join(dir, "x.txt")]);
  assert.equal(readFileSync(path.join(dir, "x.txt"), "utf8"), "x");
  assert.equal(readFileSync(path.join(dir, "sub", "y.txt"), "utf8"), "why");
});

test("files.write overwrites an existing file and keeps its mode", async () => {
  const file = path.join(scratch(), "script.sh");
  writeFileSync(file, "old contents that are longer", { mode: 0o750 });
  await sandbox.files.write(file, "new");
  assert.equal(readFileSync(file, "utf8"), "new");
  assert.equal(statSync(file).mode & 0o777, 0o750);
});

test("files.write and files.read with gzip round-trip the content", async () => {
  const file = path.join(scratch(), "zipped.txt");
  const text = "gzip me ".repeat(4096);
  await sandbox.files.write(file, text, { gzip: true });
  assert.equal(readFileSync(file, "utf8"), text);
  assert.equal(await sandbox.files.read(file, { gzip: true }), text);
});

test("files.write metadata comes back from getInfo", async (tc) => {
  const file = path.join(scratch(), "meta.txt");
  const info = await sandbox.files.write(file, "m", { metadata: { owner: "team-a" } });
  if (!info.metadata) return tc.skip("the test filesystem refuses user xattrs");
  assert.deepEqual(info.metadata, { owner: "team-a" });
  assert.deepEqual((await sandbox.files.getInfo(file)).metadata, { owner: "team-a" });
});

test("files.read returns text", async () => {
  const file = path.join(scratch(), "read.txt");
  writeFileSync(file, "text ✓ content");
  assert.equal(await sandbox.files.read(file), "text ✓ content");
});

test("files.read returns bytes", async () => {
  const file = path.join(scratch(), "read.bin");
  writeFileSync(file, Buffer.from([9, 8, 7, 0, 255]));
  const bytes = await sandbox.files.read(file, { format: "bytes" });
  assert.deepEqual([...bytes], [9, 8, 7, 0, 255]);
});

test("files.read returns an empty file as empty bytes", async () => {
  const file = path.join(scratch(), "empty");
  writeFileSync(file, "");
  const bytes = await sandbox.files.read(file, { format: "bytes" });
  assert.equal(bytes.length, 0);
});

test("files.read returns a stream", async () => {
  const file = path.join(scratch(), "stream.bin");
  const data = Buffer.alloc(3 << 20, "abc");
  writeFileSync(file, data);
  const stream = await sandbox.files.read(file, { format: "stream" });
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
  assert.ok(Buffer.concat(chunks).equals(data));
});

test("files.read of a missing file throws FileNotFoundError", async () => {
  await assert.rejects(sandbox.files.read(path.join(scratch(), "nope")), { name: "FileNotFoundError" });
});

test("files.list lists one level by default and deeper with depth", async () => {
  const dir = scratch();
  mkdirSync(path.join(dir, "d1", "d2"), { recursive: true });
  writeFileSync(path.join(dir, "f.txt"), "f");
  writeFileSync(path.join(dir, "d1", "g.txt"), "g");
  writeFileSync(path.join(dir, "d1", "d2", "h.txt"), "h");

  const one = await sandbox.files.list(dir);
  assert.deepEqual(
    one.map((e) => [e.name, e.type, e.path]),
    [
      ["d1", "dir", path.join(dir, "d1")],
      ["f.txt", "file", path.join(dir, "f.txt")],
    ],
  );
  const two = await sandbox.files.list(dir, { depth: 2 });
  assert.deepEqual(
    two.map((e) => path.relative(dir, e.path)),
    ["d1", "d1/d2", "d1/g.txt", "f.txt"],
  );
  const three = await sandbox.files.list(dir, { depth: 3 });
  assert.ok(three.some((e) => e.path === path.join(dir, "d1", "d2", "h.txt")));
});

test("files.makeDir returns true when it creates and false when the directory exists", async () => {
  const dir = path.join(scratch(), "p", "q");
  assert.equal(await sandbox.files.makeDir(dir), true);
  assert.ok(statSync(dir).isDirectory());
  assert.equal(await sandbox.files.makeDir(dir), false);
});

test("files.rename moves a file and answers the new entry", async () => {
  const dir = scratch();
  writeFileSync(path.join(dir, "old.txt"), "content");
  const info = await sandbox.files.rename(path.join(dir, "old.txt"), path.join(dir, "new", "new.txt"));
  assert.equal(info.path, path.join(dir, "new", "new.txt"));
  assert.equal(info.type, "file");
  assert.equal(readFileSync(path.join(dir, "new", "new.txt"), "utf8"), "content");
  assert.equal(await sandbox.files.exists(path.join(dir, "old.txt")), false);
});

test("files.remove removes a file and a directory tree", async () => {
  const dir = scratch();
  writeFileSync(path.join(dir, "f"), "x");
  mkdirSync(path.join(dir, "tree", "deep"), { recursive: true });
  writeFileSync(path.join(dir, "tree", "deep", "g"), "y");
  await sandbox.files.remove(path.join(dir, "f"));
  await sandbox.files.remove(path.join(dir, "tree"));
  assert.equal(await sandbox.files.exists(path.join(dir, "f")), false);
  assert.equal(await sandbox.files.exists(path.join(dir, "tree")), false);
});

test("files.remove of a missing path succeeds, as it does against envd", async () => {
  await sandbox.files.remove(path.join(scratch(), "never-was"));
});

test("an unknown user is an AuthenticationError, for RPCs and /files alike, as with envd", async () => {
  const user = "no-such-user-e2b";
  await assert.rejects(sandbox.files.exists("/", { user }), (err: unknown) => err instanceof AuthenticationError);
  await assert.rejects(
    sandbox.files.read("/etc/hostname", { user }),
    (err: unknown) => err instanceof AuthenticationError,
  );
});

test("files.exists tells existing from missing paths", async () => {
  const dir = scratch();
  writeFileSync(path.join(dir, "here"), "");
  assert.equal(await sandbox.files.exists(path.join(dir, "here")), true);
  assert.equal(await sandbox.files.exists(dir), true);
  assert.equal(await sandbox.files.exists(path.join(dir, "missing")), false);
});

test("files.getInfo describes a file and a directory", async () => {
  const dir = scratch();
  const file = path.join(dir, "info.txt");
  writeFileSync(file, "12345", { mode: 0o640 });
  const info = await sandbox.files.getInfo(file);
  assert.equal(info.name, "info.txt");
  assert.equal(info.type, "file");
  assert.equal(info.path, file);
  assert.equal(info.size, 5);
  assert.equal(info.mode, 0o640);
  assert.equal(info.permissions, "-rw-r-----");
  assert.equal(info.owner, "root");
  assert.equal(info.group, "root");
  assert.equal(info.modifiedTime?.getTime(), Math.floor(statSync(file).mtimeMs));

  const dirInfo = await sandbox.files.getInfo(dir);
  assert.equal(dirInfo.type, "dir");
  assert.match(dirInfo.permissions, /^drwx/);
});

test("files.watchDir reports a created file", async () => {
  const dir = scratch();
  const waiter = waitForEvent((e) => e.name === "made.txt" && e.type === "create");
  const handle = await sandbox.files.watchDir(dir, waiter.onEvent);
  try {
    writeFileSync(path.join(dir, "made.txt"), "hi");
    const event = await waiter.promise;
    assert.equal(event.type, "create");
  } finally {
    await handle.stop();
  }
});

test("files.watchDir reports a write made with files.write", async () => {
  const dir = scratch();
  const waiter = waitForEvent((e) => e.name === "written.txt" && e.type === "write");
  const handle = await sandbox.files.watchDir(dir, waiter.onEvent);
  try {
    await sandbox.files.write(path.join(dir, "written.txt"), "data");
    await waiter.promise;
    assert.deepEqual(
      waiter.seen.map((e) => [e.name, e.type]),
      [
        ["written.txt", "create"],
        ["written.txt", "chmod"],
        ["written.txt", "write"],
      ],
    );
  } finally {
    await handle.stop();
  }
});

test("files.watchDir with recursive reports changes in subdirectories", async () => {
  const dir = scratch();
  mkdirSync(path.join(dir, "sub"));
  const waiter = waitForEvent((e) => e.name === "sub/new/deep.txt" && e.type === "create");
  const handle = await sandbox.files.watchDir(dir, waiter.onEvent, { recursive: true });
  try {
    mkdirSync(path.join(dir, "sub", "new"));
    writeFileSync(path.join(dir, "sub", "new", "deep.txt"), "deep");
    await waiter.promise;
    assert.ok(waiter.seen.some((e) => e.name === "sub/new" && e.type === "create"));
  } finally {
    await handle.stop();
  }
});
