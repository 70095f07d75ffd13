import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync, gzipSync } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  EventType,
  Filesystem,
  type FilesystemEvent,
  FileType,
  WatchDirRequestSchema,
  type WatchDirResponse,
} from "@tether/protocol/filesystem";
import { setAttribute } from "fs-xattr";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { createTestUser, type TestUser } from "./support/users.js";

let t: TestAgent;
let n = 0;
const scratch = () => {
  const dir = path.join(t.dir, `case-${++n}`);
  mkdirSync(dir);
  return dir;
};

before(async () => {
  t = await startTestAgent();
});
after(() => t.close());

const isCode = (code: Code, message?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${err}`);
  assert.equal(Code[err.code], Code[code], err.message);
  if (message) assert.match(err.rawMessage, message);
  return true;
};

const basicAuth = (user: string) => `Basic ${Buffer.from(`${user}:`).toString("base64")}`;
const filesUrl = (query: Record<string, string>) => `${t.url}/files?${new URLSearchParams(query)}`;
const tempFilesIn = (dir: string) => readdirSync(dir).filter((name) => name.endsWith(".tether-upload"));

/** Polls `check` until it returns a value (bounded), for effects the agent makes asynchronously. */
async function eventually<T>(check: () => T | undefined | false, what: string): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const value = check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Reads a WatchDir stream in the background; `until` resolves when a matching message arrived. */
function watchStream(stream: AsyncIterable<WatchDirResponse>) {
  const messages: WatchDirResponse["event"][] = [];
  const waiters: { match: (m: WatchDirResponse["event"]) => boolean; resolve: () => void }[] = [];
  const done = (async () => {
    for await (const message of stream) {
      messages.push(message.event);
      for (const w of waiters) if (w.match(message.event)) w.resolve();
    }
  })();
  return {
    messages,
    done,
    events: () => messages.filter((m) => m.case === "filesystem").map((m) => m.value as FilesystemEvent),
    until(match: (m: WatchDirResponse["event"]) => boolean): Promise<void> {
      if (messages.some(match)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
  };
}
const fsEvent = (name: string, type: EventType) => (m: WatchDirResponse["event"]) =>
  m.case === "filesystem" && m.value.name === name && m.value.type === type;

describe("filesystem RPC: bad requests", () => {
  test("an empty path is invalid_argument", async () => {
    await assert.rejects(t.files.stat({ path: "" }), isCode(Code.InvalidArgument, /path is empty/));
    await assert.rejects(t.files.listDir({ path: "" }), isCode(Code.InvalidArgument));
    await assert.rejects(t.files.move({ source: "", destination: "/tmp/x" }), isCode(Code.InvalidArgument, /source/));
  });

  test("missing paths are not_found and the message names the path", async () => {
    const missing = path.join(scratch(), "missing");
    await assert.rejects(t.files.stat({ path: missing }), isCode(Code.NotFound, new RegExp(missing)));
    await assert.rejects(t.files.listDir({ path: missing }), isCode(Code.NotFound));
    await assert.rejects(t.files.move({ source: missing, destination: `${missing}2` }), isCode(Code.NotFound));
    await assert.rejects(t.files.watchDir({ path: missing })[Symbol.asyncIterator]().next(), isCode(Code.NotFound));
  });

  test("removing a path that does not exist succeeds, as envd's remove-all does", async () => {
    const missing = path.join(scratch(), "missing");
    await assert.doesNotReject(t.files.remove({ path: missing }));
    await assert.doesNotReject(t.files.remove({ path: path.join(missing, "deeper") }));
  });

  test("listing or watching a file, or making a directory over one, is invalid_argument", async () => {
    const file = path.join(scratch(), "plain");
    writeFileSync(file, "x");
    await assert.rejects(t.files.listDir({ path: file }), isCode(Code.InvalidArgument, /not a directory/));
    await assert.rejects(t.files.makeDir({ path: file }), isCode(Code.InvalidArgument, /not a directory/));
    await assert.rejects(t.files.createWatcher({ path: file }), isCode(Code.InvalidArgument));
  });

  test("an unknown watcher id is not_found", async () => {
    await assert.rejects(t.files.getWatcherEvents({ watcherId: "no-such-watcher" }), isCode(Code.NotFound, /no-such/));
    await assert.rejects(t.files.removeWatcher({ watcherId: "no-such-watcher" }), isCode(Code.NotFound));
  });

  test("an unknown user is unauthenticated, as envd answers (401 on /files)", async () => {
    const files = createClient(Filesystem, t.transport({ authorization: basicAuth("no-such-user-q") }));
    await assert.rejects(files.stat({ path: "/" }), isCode(Code.Unauthenticated, /no-such-user-q/));
    const res = await fetch(filesUrl({ path: "/etc/hostname", username: "no-such-user-q" }));
    assert.equal(res.status, 401);
    assert.match(((await res.json()) as { message: string }).message, /no-such-user-q/);
  });
});

describe("filesystem RPC", () => {
  test("relative paths and ~ resolve against the user's home", async () => {
    const home = os.userInfo().homedir;
    assert.equal((await t.files.stat({ path: "~" })).entry?.path, home);
    assert.equal((await t.files.stat({ path: "." })).entry?.path, home);
    const rel = path.relative(home, t.dir);
    assert.equal((await t.files.stat({ path: rel })).entry?.path, t.dir);
  });

  test("stat of a symlink reports its target; a dangling link stays a symlink", async () => {
    const dir = scratch();
    writeFileSync(path.join(dir, "target.txt"), "abc");
    symlinkSync("target.txt", path.join(dir, "link"));
    symlinkSync("nowhere", path.join(dir, "dangling"));
    const link = (await t.files.stat({ path: path.join(dir, "link") })).entry;
    assert.equal(link?.type, FileType.FILE);
    assert.equal(link?.symlinkTarget, path.join(dir, "target.txt"));
    assert.match(link?.permissions ?? "", /^L/);
    const dangling = (await t.files.stat({ path: path.join(dir, "dangling") })).entry;
    assert.equal(dangling?.type, FileType.SYMLINK);
  });

  test("listDir with depth 0 lists one level, like depth 1", async () => {
    const dir = scratch();
    mkdirSync(path.join(dir, "a", "b"), { recursive: true });
    const entries = (await t.files.listDir({ path: dir, depth: 0 })).entries;
    assert.deepEqual(
      entries.map((e) => e.path),
      [path.join(dir, "a")],
    );
  });

  test("makeDir answers the new directory's entry", async () => {
    const dir = path.join(scratch(), "x", "y");
    const res = await t.files.makeDir({ path: dir });
    assert.equal(res.entry?.type, FileType.DIRECTORY);
    assert.equal(res.entry?.path, dir);
    await assert.rejects(t.files.makeDir({ path: dir }), isCode(Code.AlreadyExists));
  });

  test("watchDir with a deadline (Connect-Timeout-Ms) ends with deadline_exceeded, as envd's does", async () => {
    // A plain header: connect-es's timeoutMs would end the call client-side first.
    const w = watchStream(t.files.watchDir({ path: scratch() }, { headers: { "connect-timeout-ms": "200" } }));
    await assert.rejects(w.done, isCode(Code.DeadlineExceeded));
    assert.deepEqual(
      w.messages.map((m) => m.case),
      ["start"],
    );
  });

  test("watchDir streams start first, then create, write, chmod, rename and remove", async () => {
    const dir = scratch();
    const call = new AbortController();
    const w = watchStream(t.files.watchDir({ path: dir, includeEntry: true }, { signal: call.signal }));
    await w.until((m) => m.case === "start");
    assert.equal(w.messages[0].case, "start");

    const file = path.join(dir, "f.txt");
    writeFileSync(file, "");
    await w.until(fsEvent("f.txt", EventType.CREATE));
    writeFileSync(file, "more", { flag: "a" });
    await w.until(fsEvent("f.txt", EventType.WRITE));
    chmodSync(file, 0o600);
    await w.until(fsEvent("f.txt", EventType.CHMOD));
    renameSync(file, path.join(dir, "g.txt"));
    await w.until(fsEvent("g.txt", EventType.CREATE));
    rmSync(path.join(dir, "g.txt"));
    await w.until(fsEvent("g.txt", EventType.REMOVE));
    call.abort();
    await w.done.catch(() => {});

    assert.deepEqual(
      w.events().map((e) => [e.name, EventType[e.type]]),
      [
        ["f.txt", "CREATE"],
        ["f.txt", "WRITE"],
        ["f.txt", "CHMOD"],
        ["f.txt", "RENAME"],
        ["g.txt", "CREATE"],
        ["g.txt", "REMOVE"],
      ],
    );
    const created = w.events()[0];
    assert.equal(created.entry?.path, file);
    assert.equal(created.entry?.type, FileType.FILE);
    assert.equal(w.events()[5].entry, undefined);
  });

  test("watchDir without recursive ignores subdirectories; with it, reports them", async () => {
    const dir = scratch();
    mkdirSync(path.join(dir, "sub"));
    const call = new AbortController();
    const flat = watchStream(t.files.watchDir({ path: dir }, { signal: call.signal }));
    const deep = watchStream(t.files.watchDir({ path: dir, recursive: true }, { signal: call.signal }));
    await Promise.all([flat.until((m) => m.case === "start"), deep.until((m) => m.case === "start")]);
    writeFileSync(path.join(dir, "sub", "inner.txt"), "x");
    writeFileSync(path.join(dir, "top.txt"), "x");
    await deep.until(fsEvent("top.txt", EventType.CREATE));
    await flat.until(fsEvent("top.txt", EventType.CREATE));
    call.abort();
    await Promise.all([flat.done.catch(() => {}), deep.done.catch(() => {})]);
    assert.ok(deep.events().some((e) => e.name === "sub/inner.txt" && e.type === EventType.CREATE));
    assert.ok(!flat.events().some((e) => e.name.startsWith("sub/")));
  });

  test("watchDir sends keepalives at the interval the client asks for", async () => {
    const dir = scratch();
    const call = new AbortController();
    const files = createClient(Filesystem, t.transport({ "keepalive-ping-interval": "0.2" }));
    const w = watchStream(files.watchDir(create(WatchDirRequestSchema, { path: dir }), { signal: call.signal }));
    await w.until((m) => m.case === "keepalive");
    call.abort();
    await w.done.catch(() => {});
    assert.equal(w.messages[0].case, "start");
  });

  test("createWatcher / getWatcherEvents drains pending events / removeWatcher", async () => {
    const dir = scratch();
    const { watcherId } = await t.files.createWatcher({ path: dir, recursive: true });
    writeFileSync(path.join(dir, "polled.txt"), "p");
    const events: FilesystemEvent[] = [];
    const sawWrite = () => events.some((e) => e.name === "polled.txt" && e.type === EventType.WRITE);
    for (let i = 0; i < 500 && !sawWrite(); i++) {
      events.push(...(await t.files.getWatcherEvents({ watcherId })).events);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(
      events.map((e) => [e.name, EventType[e.type]]),
      [
        ["polled.txt", "CREATE"],
        ["polled.txt", "WRITE"],
      ],
    );
    // Drained: nothing new happened, so the next poll is empty.
    assert.deepEqual((await t.files.getWatcherEvents({ watcherId })).events, []);
    await t.files.removeWatcher({ watcherId });
    await assert.rejects(t.files.getWatcherEvents({ watcherId }), isCode(Code.NotFound));
  });
});

describe("watch events of uploads (envd writes in place: ours are atomic renames)", () => {
  const upload = async (file: string, body: string) => {
    const res = await fetch(filesUrl({ path: file }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body,
    });
    assert.equal(res.status, 200);
  };
  const names = (events: FilesystemEvent[]) => events.map((e) => [e.name, EventType[e.type]]);

  test("a poll right after the upload answered sees inotify's events of envd's write, once", async () => {
    const dir = scratch();
    const { watcherId } = await t.files.createWatcher({ path: dir, includeEntry: true });
    const file = path.join(dir, "up.txt");
    await upload(file, "first");
    const created = (await t.files.getWatcherEvents({ watcherId })).events;
    assert.deepEqual(names(created), [
      ["up.txt", "CREATE"],
      ["up.txt", "CHMOD"],
      ["up.txt", "WRITE"],
    ]);
    assert.equal(created[2].entry?.size, 5n);
    await upload(file, "second!");
    assert.deepEqual(names((await t.files.getWatcherEvents({ watcherId })).events), [
      ["up.txt", "CHMOD"],
      ["up.txt", "WRITE"],
    ]);
    // The renames' own inotify events come later and add nothing: everything up to a
    // marker written afterwards is the marker.
    writeFileSync(path.join(dir, "marker"), "");
    const later: FilesystemEvent[] = [];
    for (let i = 0; i < 500 && !later.some((e) => e.name === "marker"); i++) {
      later.push(...(await t.files.getWatcherEvents({ watcherId })).events);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(names(later)[0], ["marker", "CREATE"]);
    assert.ok(!later.some((e) => e.name === "up.txt"), JSON.stringify(names(later)));
    await t.files.removeWatcher({ watcherId });
  });

  test("a WatchDir stream gets the same events, and no upload temp file", async () => {
    const dir = scratch();
    const call = new AbortController();
    const w = watchStream(t.files.watchDir({ path: dir, recursive: true }, { signal: call.signal }));
    await w.until((m) => m.case === "start");
    mkdirSync(path.join(dir, "sub"));
    await w.until(fsEvent("sub", EventType.CREATE));
    await upload(path.join(dir, "sub", "deep.txt"), "x");
    writeFileSync(path.join(dir, "marker"), "");
    await w.until(fsEvent("marker", EventType.CREATE));
    call.abort();
    await w.done.catch(() => {});
    assert.deepEqual(names(w.events()), [
      ["sub", "CREATE"],
      ["sub/deep.txt", "CREATE"],
      ["sub/deep.txt", "CHMOD"],
      ["sub/deep.txt", "WRITE"],
      ["marker", "CREATE"],
    ]);
  });
});

describe("GET /files", () => {
  test("a missing file is a JSON 404", async () => {
    const missing = path.join(scratch(), "nope");
    const res = await fetch(filesUrl({ path: missing }));
    assert.equal(res.status, 404);
    const body = (await res.json()) as { message: string; code: number };
    assert.equal(body.code, 404);
    assert.match(body.message, new RegExp(missing));
  });

  test("a directory is a clear 400", async () => {
    const dir = scratch();
    const res = await fetch(filesUrl({ path: dir }));
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { message: string }).message, /is a directory/);
  });

  test("no path is a 400", async () => {
    const res = await fetch(`${t.url}/files`);
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { message: string }).message, /path is empty/);
  });

  test("a file rewritten while it is read comes back as read, never as a reset stream", async () => {
    const file = path.join(scratch(), "counter");
    writeFileSync(file, "0\n");
    // Truncates and rewrites the file about a thousand times a second.
    const writer = spawn("sh", ["-c", `i=0; while :; do i=$((i+1)); echo $i > ${file}; done`], { stdio: "ignore" });
    try {
      for (let n = 0; n < 200; n++) {
        const res = await fetch(filesUrl({ path: file }), { headers: { "accept-encoding": "identity" } });
        assert.equal(res.status, 200);
        // What was read, as `cat` would give it: one state of the file, or two when a read
        // that came up short is followed by one after a rewrite ("97\n" then the 4th byte of
        // "100\n": "97\n\n"). Never an error, and never bytes the file did not hold.
        assert.match(await res.text(), /^[\d\n]*$/);
      }
    } finally {
      writer.kill();
    }
  });

  test("answers octet-stream with a filename, and gzip when accepted", async () => {
    const file = path.join(scratch(), "report.txt");
    const data = "compressible ".repeat(10_000);
    writeFileSync(file, data);

    const plain = await fetch(filesUrl({ path: file }), { headers: { "accept-encoding": "identity" } });
    assert.equal(plain.headers.get("content-type"), "application/octet-stream");
    assert.match(plain.headers.get("content-disposition") ?? "", /filename="report.txt"/);
    assert.equal(await plain.text(), data);

    // A raw request, so the compressed body is seen as it travels.
    const raw = await new Promise<{ encoding?: string; body: Buffer }>((resolve, reject) => {
      http
        .get(filesUrl({ path: file }), { headers: { "accept-encoding": "gzip" } }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ encoding: res.headers["content-encoding"], body: Buffer.concat(chunks) }));
        })
        .on("error", reject);
    });
    assert.equal(raw.encoding, "gzip");
    assert.ok(raw.body.length < data.length / 10, `compressed to ${raw.body.length} bytes`);
    assert.equal(gunzipSync(raw.body).toString(), data);
  });
});

describe("POST /files", () => {
  test("octet-stream writes the body to path, creating parents", async () => {
    const file = path.join(scratch(), "new", "dir", "file.bin");
    const res = await fetch(filesUrl({ path: file }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: Buffer.from("raw bytes"),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), [{ name: "file.bin", type: "file", path: file }]);
    assert.equal(readFileSync(file, "utf8"), "raw bytes");
  });

  test("an upload to a symlink replaces the file it points to", async () => {
    const dir = scratch();
    writeFileSync(path.join(dir, "real.txt"), "old");
    symlinkSync("real.txt", path.join(dir, "link.txt"));
    const res = await fetch(filesUrl({ path: path.join(dir, "link.txt") }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: "new",
    });
    assert.equal(res.status, 200);
    assert.equal(readFileSync(path.join(dir, "real.txt"), "utf8"), "new");
    assert.ok(lstatSync(path.join(dir, "link.txt")).isSymbolicLink());
  });

  test("octet-stream without a path is a 400", async () => {
    const res = await fetch(`${t.url}/files`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: "x",
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { message: string }).message, /path/);
  });

  test("a gzip-encoded body is stored decompressed; a corrupt one is a 400 that writes nothing", async () => {
    const dir = scratch();
    const data = "zipped ".repeat(5000);
    const ok = await fetch(filesUrl({ path: path.join(dir, "unzipped.txt") }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "content-encoding": "gzip" },
      body: gzipSync(data),
    });
    assert.equal(ok.status, 200);
    assert.equal(readFileSync(path.join(dir, "unzipped.txt"), "utf8"), data);

    const bad = await fetch(filesUrl({ path: path.join(dir, "bad.txt") }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "content-encoding": "gzip" },
      body: Buffer.from("this is not gzip"),
    });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /gzip/);
    assert.deepEqual(readdirSync(dir), ["unzipped.txt"]);
  });

  test("multipart with several parts writes each to its filename", async () => {
    const dir = scratch();
    const form = new FormData();
    form.append("file", new Blob(["first"]), path.join(dir, "one.txt"));
    form.append("file", new Blob(["second"]), path.join(dir, "nested", "two.txt"));
    const res = await fetch(`${t.url}/files`, { method: "POST", body: form });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), [
      { name: "one.txt", type: "file", path: path.join(dir, "one.txt") },
      { name: "two.txt", type: "file", path: path.join(dir, "nested", "two.txt") },
    ]);
    assert.equal(readFileSync(path.join(dir, "one.txt"), "utf8"), "first");
    assert.equal(readFileSync(path.join(dir, "nested", "two.txt"), "utf8"), "second");
  });

  test("multipart with a path query writes its one part there; two parts to one path write nothing", async () => {
    const dir = scratch();
    const form = new FormData();
    form.append("file", new Blob(["content"]), "ignored-name");
    const res = await fetch(filesUrl({ path: path.join(dir, "chosen.txt") }), { method: "POST", body: form });
    assert.equal(res.status, 200);
    assert.equal(readFileSync(path.join(dir, "chosen.txt"), "utf8"), "content");

    const two = new FormData();
    two.append("file", new Blob(["a"]), "a");
    two.append("file", new Blob(["b"]), "b");
    const clash = await fetch(filesUrl({ path: path.join(dir, "both.txt") }), { method: "POST", body: two });
    assert.equal(clash.status, 400);
    assert.match(((await clash.json()) as { message: string }).message, /same path/);
    assert.deepEqual(readdirSync(dir), ["chosen.txt"]);
  });

  test("an upload cut off mid-body leaves the old file intact and no temp file behind", async () => {
    const dir = scratch();
    const file = path.join(dir, "precious.txt");
    writeFileSync(file, "old contents");
    const req = http.request(filesUrl({ path: file }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "content-length": String(64 << 20) },
    });
    req.on("error", () => {});
    req.write(Buffer.alloc(1 << 20, "n"));
    // The temp file exists while the body streams in ...
    await eventually(() => tempFilesIn(dir).length === 1, "the upload's temp file");
    req.destroy();
    // ... and is gone once the agent sees the client leave.
    await eventually(() => tempFilesIn(dir).length === 0, "the temp file to be removed");
    assert.equal(readFileSync(file, "utf8"), "old contents");
    assert.deepEqual(readdirSync(dir), ["precious.txt"]);
  });

  test("a multipart upload cut off mid-part leaves nothing behind", async () => {
    const dir = scratch();
    const boundary = "tetherboundary";
    const req = http.request(`${t.url}/files`, {
      method: "POST",
      headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": String(64 << 20) },
    });
    req.on("error", () => {});
    req.write(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${path.join(dir, "part.bin")}"\r\n` +
        "Content-Type: application/octet-stream\r\n\r\n",
    );
    req.write(Buffer.alloc(1 << 20, "p"));
    await eventually(() => tempFilesIn(dir).length === 1, "the part's temp file");
    req.destroy();
    await eventually(() => tempFilesIn(dir).length === 0, "the temp file to be removed");
    assert.deepEqual(readdirSync(dir), []);
  });

  test("X-Metadata headers come back as the file's metadata", async (tc) => {
    const dir = scratch();
    const probe = path.join(dir, "probe");
    writeFileSync(probe, "");
    try {
      await setAttribute(probe, "user.tether.probe", "1");
    } catch (err) {
      tc.skip(`the test filesystem refuses user xattrs (${(err as Error).message})`);
      return;
    }
    rmSync(probe);
    const file = path.join(dir, "tagged.txt");
    const res = await fetch(filesUrl({ path: file }), {
      method: "POST",
      headers: {
        "content-type": "application/octet-stream",
        "X-Metadata-Author": "tether",
        "x-metadata-stage": "test",
      },
      body: "tagged",
    });
    assert.equal(res.status, 200, await res.clone().text());
    const [written] = (await res.json()) as { metadata?: Record<string, string> }[];
    assert.deepEqual(written.metadata, { author: "tether", stage: "test" });
    const entry = (await t.files.stat({ path: file })).entry;
    assert.deepEqual({ ...entry?.metadata }, { author: "tether", stage: "test" });
  });

  test("ENOSPC answers 507 and leaves nothing behind", async (tc) => {
    if (process.getuid?.() !== 0) return tc.skip("needs root to mount a small tmpfs");
    const mnt = scratch();
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], { stdio: "ignore" });
    } catch {
      return tc.skip("cannot mount tmpfs here (no CAP_SYS_ADMIN)");
    }
    try {
      const res = await fetch(filesUrl({ path: path.join(mnt, "big.bin") }), {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: Buffer.alloc(4 << 20),
      });
      assert.equal(res.status, 507);
      assert.equal(((await res.json()) as { code: number }).code, 507);
      assert.deepEqual(readdirSync(mnt), []);
    } finally {
      execFileSync("umount", [mnt]);
    }
  });
});

describe("ownership when acting for another user", {
  skip: process.getuid?.() !== 0 && "needs root to create a user",
}, () => {
  let name = "";
  let uid = 0;
  let home = "";
  let user: TestUser | undefined;
  before(() => {
    user = createTestUser("tetherf");
    ({ name, uid, home } = user);
  });
  after(() => user?.remove());

  test("uploaded files and the directories created for them belong to the user", async () => {
    // Root's, but open to all: the user may create in it.
    const dir = path.join(home, `up-${++n}`);
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const file = path.join(dir, "made", "for", "user.txt");
    const res = await fetch(filesUrl({ path: file, username: name }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: "mine",
    });
    assert.equal(res.status, 200);
    assert.equal(statSync(file).uid, uid);
    assert.equal(statSync(path.join(dir, "made", "for")).uid, uid);
    assert.equal(statSync(path.join(dir, "made")).uid, uid);
    assert.equal(statSync(dir).uid, 0, "an existing directory keeps its owner");
  });

  test("makeDir and relative paths act in the user's home, owned by the user", async () => {
    const files = createClient(Filesystem, t.transport({ authorization: basicAuth(name) }));
    const res = await files.makeDir({ path: "projects/app" });
    assert.equal(res.entry?.path, path.join(home, "projects", "app"));
    assert.equal(res.entry?.owner, name);
    assert.equal(statSync(path.join(home, "projects")).uid, uid);

    const upload = await fetch(filesUrl({ path: "notes.txt" }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream", authorization: basicAuth(name) },
      body: "n",
    });
    assert.deepEqual(await upload.json(), [{ name: "notes.txt", type: "file", path: path.join(home, "notes.txt") }]);
    assert.equal(statSync(path.join(home, "notes.txt")).uid, uid);
  });

  /** A root-only directory holding a secret, and links to both that `name` planted in its home. */
  function plantLinks(): { vault: string; secret: string; fileLink: string; dirLink: string } {
    const vault = path.join(scratch(), "vault");
    mkdirSync(vault, { mode: 0o700 });
    const secret = path.join(vault, "secret");
    writeFileSync(secret, "root's secret", { mode: 0o600 });
    const fileLink = path.join(home, `out-${n}.txt`);
    const dirLink = path.join(home, `vault-${n}`);
    symlinkSync(secret, fileLink);
    symlinkSync(vault, dirLink);
    lchownSync(fileLink, uid, uid);
    lchownSync(dirLink, uid, uid);
    return { vault, secret, fileLink, dirLink };
  }

  const unchanged = (secret: string) => {
    assert.equal(readFileSync(secret, "utf8"), "root's secret");
    assert.equal(statSync(secret).uid, 0);
  };

  test("a link the user planted does not make an upload replace and chown root's file", async () => {
    const { secret, fileLink, dirLink } = plantLinks();
    for (const target of [fileLink, path.join(dirLink, "secret"), path.join(dirLink, "new.txt")]) {
      const res = await fetch(filesUrl({ path: target, username: name }), {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: "overwritten",
      });
      assert.equal(res.status, 403, `${target}: ${await res.text()}`);
    }
    unchanged(secret);
    assert.deepEqual(readdirSync(path.dirname(secret)), ["secret"]);
  });

  test("a link the user planted does not let a download read root's file", async () => {
    const { secret, fileLink } = plantLinks();
    const res = await fetch(filesUrl({ path: fileLink, username: name }));
    assert.equal(res.status, 403);
    assert.doesNotMatch(await res.text(), /root's secret/);
    unchanged(secret);
  });

  test("remove, move, makeDir, list, stat and watch through a planted link cannot reach into root's 0700 directory", async () => {
    const files = createClient(Filesystem, t.transport({ authorization: basicAuth(name) }));
    const { vault, secret, dirLink } = plantLinks();
    const denied = isCode(Code.PermissionDenied);
    await assert.rejects(files.remove({ path: path.join(dirLink, "secret") }), denied);
    await assert.rejects(files.move({ source: path.join(dirLink, "secret"), destination: "~/stolen" }), denied);
    await assert.rejects(files.move({ source: "~/.profile", destination: path.join(dirLink, "planted") }), denied);
    await assert.rejects(files.makeDir({ path: path.join(dirLink, "made") }), denied);
    await assert.rejects(files.listDir({ path: dirLink }), denied);
    await assert.rejects(files.stat({ path: path.join(dirLink, "secret") }), denied);
    await assert.rejects(files.watchDir({ path: dirLink })[Symbol.asyncIterator]().next(), denied);
    unchanged(secret);
    assert.deepEqual(readdirSync(vault), ["secret"]);
  });

  test("the user's own links still work: an upload through one replaces the file it points to", async () => {
    const real = path.join(home, `real-${++n}.txt`);
    const alias = path.join(home, `alias-${n}.txt`);
    writeFileSync(real, "old");
    chownSync(real, uid, uid);
    symlinkSync(real, alias);
    const res = await fetch(filesUrl({ path: alias, username: name }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: "new",
    });
    assert.equal(res.status, 200, await res.text());
    assert.equal(readFileSync(real, "utf8"), "new");
    assert.equal(statSync(real).uid, uid);
    assert.ok(lstatSync(alias).isSymbolicLink());
    const down = await fetch(filesUrl({ path: alias, username: name }));
    assert.equal(await down.text(), "new");
  });
});
