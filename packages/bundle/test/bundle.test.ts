import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Sandbox } from "e2b";
import {
  agentCommand,
  BUNDLE_NODE_FLAGS,
  type BuiltBundle,
  buildBundle,
  bundleCommand,
  NODE_RUNTIME,
  NotABundleDirectoryError,
  readManifest,
  verifyBundle,
} from "../src/index.js";
import { hostNodeArgv, runBundledNode, testBundle } from "./support/bundle.js";

const pinned = NODE_RUNTIME.version;

let bundle: BuiltBundle;
const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-bundle-test-"));
before(async () => {
  bundle = await testBundle();
});
after(() => rmSync(scratch, { recursive: true, force: true }));

describe("layout", () => {
  test("holds the pinned node, the loader and libraries, tetherd.js, the addons, manifest and VERSION", () => {
    const paths = bundle.files.map((f) => f.path);
    for (const expected of [
      "bin/node",
      "lib/ld-linux-x86-64.so.2",
      "lib/libc.so.6",
      "lib/libm.so.6",
      "lib/libstdc++.so.6",
      "lib/libgcc_s.so.1",
      "lib/libdl.so.2",
      "lib/libpthread.so.0",
      "tetherd.js",
      "agent/tetherd.js",
      "package.json",
      "node_modules/node-pty/package.json",
      "node_modules/node-pty/lib/index.js",
      "node_modules/node-pty/build/Release/pty.node",
      "node_modules/fs-xattr/package.json",
      "node_modules/fs-xattr/index.js",
      "node_modules/fs-xattr/build/Release/xattr.node",
      "node_modules/@tether/spawn/build/Release/spawn.node",
      "node_modules/@tether/spawn/build/Release/tether-exec-as",
    ]) {
      assert.ok(paths.includes(expected), `${expected} missing from ${paths.join(", ")}`);
    }
    assert.ok(!paths.some((p) => p.endsWith(".test.js")), "node-pty's tests are left out");
    assert.equal(bundle.nodeVersion, pinned);
    assert.match(bundle.contentHash, /^[0-9a-f]{64}$/);
    assert.deepEqual(bundle.command, [
      "/.tether/lib/ld-linux-x86-64.so.2",
      "--library-path",
      "/.tether/lib",
      "/.tether/bin/node",
      ...BUNDLE_NODE_FLAGS,
      "/.tether/tetherd.js",
    ]);
    const version = readFileSync(path.join(bundle.dir, "VERSION"), "utf8");
    assert.match(version, new RegExp(`^node ${pinned}$`, "m"));
    assert.match(version, new RegExp(`^sha256 ${bundle.contentHash}$`, "m"));
    // Readable by whatever user a container runs as.
    assert.equal(statSync(bundle.dir).mode & 0o777, 0o755);
    assert.equal(statSync(path.join(bundle.dir, "bin", "node")).mode & 0o777, 0o755);
    assert.equal(statSync(path.join(bundle.dir, "tetherd.js")).mode & 0o777, 0o644);
    const execAs = path.join(bundle.dir, "node_modules/@tether/spawn/build/Release/tether-exec-as");
    assert.equal(statSync(execAs).mode & 0o777, 0o755, "tether-exec-as is executable");
  });

  test("zod in the agent: its small build and English messages only", () => {
    const agentDir = path.join(bundle.dir, "agent");
    // esbuild writes each module's path in a comment before it.
    const modules = readdirSync(agentDir)
      .filter((f) => f.endsWith(".js"))
      .flatMap((f) => [...readFileSync(path.join(agentDir, f), "utf8").matchAll(/^\/\/ (\S*\/zod\/\S+)$/gm)])
      .map((m) => m[1]);
    assert.ok(modules.some((m) => m.includes("/zod/v4/mini/")));
    assert.deepEqual(
      modules.filter((m) => m.includes("/zod/v4/classic/") || /\/zod\/v4\/locales\/(?!index\.js|en\.js)/.test(m)),
      [],
    );
  });

  test("agentCommand writes the argv for any mount point", () => {
    assert.deepEqual(agentCommand("/opt/t/", ["--port", "1"]), [
      "/opt/t/lib/ld-linux-x86-64.so.2",
      "--library-path",
      "/opt/t/lib",
      "/opt/t/bin/node",
      ...BUNDLE_NODE_FLAGS,
      "/opt/t/tetherd.js",
      "--port",
      "1",
    ]);
    assert.throws(() => agentCommand("relative"), /absolute/);
  });
});

describe("the bundled runtime", () => {
  test("bin/node through the bundled loader is the pinned version, not the host's", async () => {
    const version = (await runBundledNode(bundle.dir, ["--version"])).trim();
    assert.equal(version, `v${pinned}`);
    assert.notEqual(version, process.version);
  });

  test("node-pty and fs-xattr load from the bundle's node_modules and work", async () => {
    const script = [
      'import * as pty from "node-pty";',
      'import { listAttributes } from "fs-xattr";',
      'const term = pty.spawn("/bin/echo", ["pty works"], {});',
      'let out = ""; term.onData((d) => { out += d; });',
      "term.onExit(async () => {",
      "  const attrs = await listAttributes(process.cwd());",
      "  console.log(JSON.stringify({ out: out.trim(), attrs: Array.isArray(attrs) }));",
      "});",
    ].join("\n");
    const stdout = await runBundledNode(bundle.dir, ["--input-type=module", "-e", script]);
    assert.deepEqual(JSON.parse(stdout), { out: "pty works", attrs: true });
  });

  test("processes the bundled node starts see no bundle libraries and no LD_LIBRARY_PATH", async () => {
    const script = [
      'const { execFileSync } = require("node:child_process");',
      'const maps = execFileSync("cat", ["/proc/self/maps"], { encoding: "utf8" });',
      'const env = execFileSync("env", { encoding: "utf8" });',
      'const own = require("node:fs").readFileSync("/proc/self/maps", "utf8");',
      "console.log(JSON.stringify({ maps, env, own }));",
    ].join("\n");
    const { maps, env, own } = JSON.parse(await runBundledNode(bundle.dir, ["-e", script]));
    const lib = path.join(bundle.dir, "lib");
    assert.ok(own.includes(`${lib}/libc.so.6`), "the bundled node itself runs on the bundle's libc");
    assert.ok(!maps.includes(lib), `a child mapped bundle libraries:\n${maps}`);
    assert.doesNotMatch(env, /^LD_/m);
  });

  test("tetherd.js starts from the bundle on this host and answers /health and the e2b SDK", async () => {
    // With the flags a sandbox runs it with: V8 keys its compile cache by flags, and a start
    // without them would miss the build's cache and write its own into the shared bundle.
    const [file, argv] = hostNodeArgv(
      bundle.dir,
      ...BUNDLE_NODE_FLAGS,
      path.join(bundle.dir, "tetherd.js"),
      "--port",
      "0",
    );
    const child = spawn(file, argv, { stdio: ["ignore", "ignore", "pipe"] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let log = "";
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
          log += chunk;
          const match = /"tcp":"(http:[^"]+)"/.exec(log);
          if (match) resolve(match[1]);
        });
        child.on("exit", (code) => reject(new Error(`tetherd exited with ${code} before listening:\n${log}`)));
      });
      const res = await fetch(`${url}/health`);
      assert.ok(res.ok, `GET /health answered ${res.status}`);
      // The official e2b SDK speaks Connect JSON over HTTP/1.1: the bundled agent's RPC
      // services (Filesystem loaded on this first call) and /files all answer it.
      const sandbox = await Sandbox.create({ debug: true, sandboxUrl: url });
      const file = path.join(scratch, "e2b.txt");
      await sandbox.files.write(file, "through the bundle");
      assert.equal(await sandbox.files.read(file), "through the bundle");
      const listed = await sandbox.files.list(scratch);
      assert.ok(listed.some((entry) => entry.name === "e2b.txt"));
      assert.deepEqual(await sandbox.commands.list(), []);
    } finally {
      child.kill("SIGTERM");
    }
  });
});

describe("compile cache", () => {
  test("a start reads the V8 compile cache made at build time and writes nothing", async () => {
    // A copy of its own: other test files run the shared test bundle on this host at the
    // same time, where its cache directory is writable (in a sandbox it is read-only).
    const dir = path.join(scratch, "cache-check");
    cpSync(bundle.dir, dir, { recursive: true, preserveTimestamps: true });
    const cacheDir = path.join(dir, "compile-cache");
    const listing = () =>
      readdirSync(cacheDir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => {
          const file = path.join(e.parentPath, e.name);
          return `${file} ${statSync(file).mtimeMs} ${statSync(file).mode & 0o777}`;
        })
        .sort();
    const before = listing();
    assert.ok(before.length > 0, "the bundle holds no compile cache");
    for (const line of before) assert.match(line, / 420$/, "cache files are 0644, readable by any container user");
    const [file, argv] = hostNodeArgv(dir, ...BUNDLE_NODE_FLAGS, path.join(dir, "tetherd.js"), "--help");
    const { stderr } = await promisify(execFile)(file, argv, {
      env: { PATH: process.env.PATH, NODE_DEBUG_NATIVE: "COMPILE_CACHE" },
      encoding: "utf8",
    });
    const main = pathToFileURL(path.join(dir, "agent", "tetherd.js")).href;
    assert.ok(stderr.includes(`V8 code cache for ESM ${main} was accepted`), `cache not used:\n${stderr}`);
    assert.deepEqual(listing(), before);
    rmSync(dir, { recursive: true });
  });

  test("with the agent's flags, V8 takes the code cache Node ships for its own modules", async () => {
    // A flag V8 counts in its flag hash (--initial-old-space-size did) makes it refuse that
    // cache: http2, http and crypto are then compiled from source at every start (~25 ms).
    const [file, argv] = hostNodeArgv(
      bundle.dir,
      ...BUNDLE_NODE_FLAGS,
      "-e",
      'require("node:http2"); require("node:http"); require("node:crypto")',
    );
    const { stderr } = await promisify(execFile)(file, argv, {
      env: { PATH: process.env.PATH, NODE_DEBUG_NATIVE: "CODE_CACHE" },
      encoding: "utf8",
    });
    assert.match(stderr, /Code cache of http2 \(\w+\) is accepted/);
    assert.doesNotMatch(stderr, /is rejected/);
  });
});

describe("content hash and caching", () => {
  test("two builds of the same inputs have the same content hash, and the files on disk match it", async () => {
    const first = await buildBundle({ outDir: path.join(scratch, "one") });
    const second = await buildBundle({ outDir: path.join(scratch, "two") });
    assert.equal(first.reused, false);
    assert.equal(second.reused, false);
    assert.equal(first.contentHash, second.contentHash);
    assert.equal(first.contentHash, bundle.contentHash);
    assert.equal(await verifyBundle(first.dir), first.contentHash);
    assert.equal(await verifyBundle(second.dir), first.contentHash);
    rmSync(second.dir, { recursive: true });
  });

  test("building into a directory that holds the same bundle reuses it without writing", async () => {
    const dir = path.join(scratch, "one");
    const before = statSync(path.join(dir, "bin", "node")).mtimeMs;
    const again = await buildBundle({ outDir: dir });
    assert.equal(again.reused, true);
    assert.equal(statSync(path.join(dir, "bin", "node")).mtimeMs, before);
  });

  test("an incomplete or different bundle in the directory is replaced", async () => {
    const dir = path.join(scratch, "one");
    rmSync(path.join(dir, "tetherd.js"));
    const rebuilt = await buildBundle({ outDir: dir });
    assert.equal(rebuilt.reused, false);
    assert.equal(await verifyBundle(dir), bundle.contentHash);
    assert.deepEqual(
      (await readManifest(dir))?.files.map((f) => f.path),
      bundle.files.map((f) => f.path),
    );
  });

  test("a directory holding something else is refused and left as it was", async () => {
    const dir = path.join(scratch, "precious");
    mkdirSync(dir);
    writeFileSync(path.join(dir, "notes.txt"), "keep me");
    await assert.rejects(buildBundle({ outDir: dir }), NotABundleDirectoryError);
    assert.equal(readFileSync(path.join(dir, "notes.txt"), "utf8"), "keep me");
  });

  test("without outDir the bundle goes to a hash-named directory under the root", async () => {
    const root = path.join(scratch, "root");
    const built = await buildBundle({ root });
    assert.equal(built.dir, path.join(root, built.contentHash.slice(0, 16)));
    rmSync(root, { recursive: true });
  });

  // Before the stamp's test, which leaves the agent's main module with another mtime (and so
  // every stamp of it stale).
  test("a root without the bundle links the one a seed root's stamp names (compile cache too), and is stamped itself", async () => {
    const root = path.join(scratch, "seeded");
    const seeded = await buildBundle({ root, seedRoot: path.dirname(bundle.dir) });
    assert.deepEqual([seeded.reused, seeded.contentHash], [false, bundle.contentHash]);
    assert.equal(seeded.dir, path.join(root, bundle.contentHash.slice(0, 16)));
    assert.equal(await verifyBundle(seeded.dir), bundle.contentHash);
    const files = (dir: string) => readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
    assert.deepEqual(files(seeded.dir), files(bundle.dir));
    const node = (dir: string) => statSync(path.join(dir, "bin", "node"));
    assert.equal(node(seeded.dir).ino, node(bundle.dir).ino, "hard-linked (the same file system), not copied");

    // Now the root's own stamp names it.
    const again = await buildBundle({ root, seedRoot: false });
    assert.deepEqual([again.reused, again.dir], [true, seeded.dir]);
    rmSync(root, { recursive: true });
  });

  test("under a root, the stamp names the bundle while its inputs are unchanged; a change or a damaged bundle makes it again", async () => {
    const root = path.join(scratch, "stamped");
    // Built here, not linked from the user's cache.
    const first = await buildBundle({ root, seedRoot: false });
    const [stampName] = readdirSync(root).filter((name) => /^inputs-[0-9a-f]{16}\.json$/.test(name));
    assert.ok(stampName, `no stamp in ${readdirSync(root)}`);
    const stampFile = path.join(root, stampName);
    const stamped = statSync(stampFile).mtimeMs;
    const stamp = JSON.parse(readFileSync(stampFile, "utf8")) as { inputs: { path: string }[] };
    const agentModule = stamp.inputs.find((i) => i.path.endsWith(path.join("agent", "dist", "src", "main.js")));
    assert.ok(agentModule, "the agent's own modules are inputs of the stamp");
    assert.ok(
      stamp.inputs.some((i) => i.path.endsWith(path.join("bin", "node"))),
      "and the runtime",
    );

    const again = await buildBundle({ root, seedRoot: false });
    assert.deepEqual([again.reused, again.contentHash, again.dir], [true, first.contentHash, first.dir]);
    assert.equal(statSync(stampFile).mtimeMs, stamped, "named by the stamp, not worked out again");

    // An input touched: worked out again (the same hash, the stamp rewritten).
    const touched = statSync(agentModule.path);
    utimesSync(agentModule.path, touched.atime, new Date(touched.mtimeMs + 2000));
    try {
      const rebuilt = await buildBundle({ root, seedRoot: false });
      assert.equal(rebuilt.contentHash, first.contentHash);
      assert.notEqual(statSync(stampFile).mtimeMs, stamped);
    } finally {
      utimesSync(agentModule.path, touched.atime, touched.mtime);
    }

    // A file of the bundle gone: the stamp does not vouch for it; the bundle is made whole again.
    rmSync(path.join(first.dir, "tetherd.js"));
    const repaired = await buildBundle({ root, seedRoot: false });
    assert.equal(repaired.reused, false);
    assert.equal(await verifyBundle(repaired.dir), first.contentHash);
    rmSync(root, { recursive: true });
  });
});

test("bundleCommand prints where the bundle is, what it holds and how to start it", async () => {
  let printed = "";
  const out = {
    write(chunk: string) {
      printed += chunk;
      return true;
    },
  } as NodeJS.WritableStream;
  const dir = path.join(scratch, "command");
  const built = await bundleCommand(dir, out);
  assert.equal(built.dir, dir);
  assert.match(printed, new RegExp(`^built tether bundle ${built.contentHash.slice(0, 16)} in ${dir}$`, "m"));
  assert.match(printed, new RegExp(`node ${pinned}, ${built.files.length} files`));
  assert.ok(printed.includes(built.command.join(" ")), printed);
  printed = "";
  const again = await bundleCommand(dir, out);
  assert.equal(again.reused, true);
  assert.match(printed, /^reused tether bundle /);
});
