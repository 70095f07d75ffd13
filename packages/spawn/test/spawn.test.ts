import assert from "node:assert/strict";
import { spawn as nodeSpawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { execAsPath, type SpawnError, type SpawnOptions, spawn, supported, withFsIds } from "@tether/spawn";

const isRoot = process.getuid?.() === 0;
const baseEnv = Object.entries(process.env).map(([key, value]) => `${key}=${value}`);

interface Result {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a child to its end, with stdin fed from `input` (closed at once when empty). */
async function run(
  file: string,
  args: string[],
  options: Partial<SpawnOptions> & { input?: string; onStart?: (pid: number) => void } = {},
): Promise<Result> {
  let exited!: (value: [number | null, NodeJS.Signals | null]) => void;
  const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    exited = resolve;
  });
  const child = spawn(
    file,
    [file, ...args],
    { env: baseEnv, cwd: "/", stdin: options.input !== undefined, ...options },
    (code, signal) => exited([code, signal]),
  );
  options.onStart?.(child.pid);
  if (child.stdin >= 0) new net.Socket({ fd: child.stdin, readable: false, writable: true }).end(options.input ?? "");
  const [stdout, stderr, [code, signal]] = await Promise.all([read(child.stdout), read(child.stderr), exit]);
  return { pid: child.pid, code, signal, stdout, stderr };
}

async function read(fd: number): Promise<string> {
  const socket = new net.Socket({ fd, readable: true, writable: false });
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  await once(socket, "close");
  return Buffer.concat(chunks).toString();
}

function spawnError(fn: () => unknown): SpawnError {
  try {
    fn();
  } catch (err) {
    return err as SpawnError;
  }
  assert.fail("expected the spawn to throw");
}

/** Fields 5 and 6 of /proc/<pid>/stat: process group and session. */
function groupAndSession(stat: string): [number, number] {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return [Number(fields[2]), Number(fields[3])];
}

const openFds = () => readdirSync("/proc/self/fd").length;

describe("@tether/spawn", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "tether-spawn-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("is supported on this kernel", () => {
    assert.equal(supported(), null);
  });

  test("reports exit codes and output on both streams", async () => {
    const result = await run("/bin/sh", ["-c", "echo out; echo err >&2; exit 7"]);
    assert.deepEqual([result.code, result.signal, result.stdout, result.stderr], [7, null, "out\n", "err\n"]);
    assert.deepEqual([(await run("true", [])).code, (await run("false", [])).code], [0, 1]);
  });

  test("reports death by a signal, sent by itself or by us", async () => {
    const self = await run("/bin/sh", ["-c", "kill -TERM $$"]);
    assert.deepEqual([self.code, self.signal], [null, "SIGTERM"]);
    const killed = await run("sleep", ["30"], { onStart: (pid) => process.kill(pid, "SIGKILL") });
    assert.deepEqual([killed.code, killed.signal], [null, "SIGKILL"]);
  });

  test("setsid puts the child in a session and process group of its own", async () => {
    const own = await run("cat", ["/proc/self/stat"], { setsid: true });
    assert.deepEqual(groupAndSession(own.stdout), [own.pid, own.pid]);
    const inherited = await run("cat", ["/proc/self/stat"]);
    assert.deepEqual(groupAndSession(inherited.stdout), groupAndSession(readFileSync("/proc/self/stat", "utf8")));
  });

  test("the child starts with default signal dispositions and nothing blocked", async () => {
    // Node ignores SIGPIPE and handles others; none of that may leak into the child.
    const status = (await run("cat", ["/proc/self/status"])).stdout;
    for (const field of ["SigBlk", "SigIgn", "SigCgt"]) {
      assert.match(status, new RegExp(`^${field}:\\s+0{16}$`, "m"), field);
    }
  });

  test("switches to the given uid and gid and drops supplementary groups", {
    skip: !isRoot && "needs root",
  }, async () => {
    const result = await run("/bin/sh", ["-c", "id -u; id -g; id -G; cat /proc/self/status"], {
      uid: 65534,
      gid: 65534,
    });
    assert.match(result.stdout, /^65534\n65534\n65534\n/);
    assert.match(result.stdout, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    assert.match(result.stdout, /^Gid:\s+65534\s+65534\s+65534\s+65534$/m);
    // The agent itself keeps its ids: the child's setuid went through the raw system call.
    assert.equal(process.getuid?.(), 0);
    assert.equal(process.getgid?.(), 0);
  });

  test("sets the supplementary groups it is given, and only on the child", {
    skip: !isRoot && "needs root",
  }, async () => {
    const result = await run("/bin/sh", ["-c", "id -u; id -G"], { uid: 65534, gid: 65534, groups: [65534, 5, 100] });
    assert.equal(result.stdout, "65534\n65534 5 100\n");
    assert.doesNotMatch(readFileSync("/proc/self/status", "utf8"), /^Groups:.*\b5\b/m);
  });

  test("a missing executable is ENOENT, like Node's spawn", () => {
    const err = spawnError(() =>
      spawn("tether-no-such-program", ["x"], { env: baseEnv, cwd: "/", stdin: false }, () => {}),
    );
    assert.equal(err.code, "ENOENT");
    assert.equal(err.errno, -2);
    assert.equal(err.syscall, "spawn tether-no-such-program");
    assert.equal(err.unsupported, false);
    assert.equal(
      spawnError(() => spawn("/no/such/file", ["x"], { env: baseEnv, cwd: "/", stdin: false }, () => {})).code,
      "ENOENT",
    );
  });

  test("a missing working directory fails the spawn; an existing one is used", async () => {
    const missing = path.join(dir, "missing");
    const err = spawnError(() => spawn("true", ["true"], { env: baseEnv, cwd: missing, stdin: false }, () => {}));
    assert.equal(err.code, "ENOENT");
    assert.match(err.message, /chdir/);
    assert.equal((await run("pwd", [], { cwd: dir })).stdout, `${dir}\n`);
  });

  test("PATH is searched in the child's environment, with execvp's rules", async () => {
    const bin = path.join(dir, "bin");
    const denied = path.join(dir, "denied");
    for (const [d, mode] of [
      [bin, 0o755],
      [denied, 0o644],
    ] as const) {
      mkdirSync(d);
      writeFileSync(path.join(d, "tether-tool"), `#!/bin/sh\necho from ${path.basename(d)}\n`);
      chmodSync(path.join(d, "tether-tool"), mode);
    }
    const env = (p: string) => [...baseEnv.filter((e) => !e.startsWith("PATH=")), `PATH=${p}`];
    // Found only through the given PATH, which the agent's own does not have.
    assert.equal((await run("tether-tool", [], { env: env(`/nonexistent:${bin}`) })).stdout, "from bin\n");
    // A file that is not executable is passed over for a later one, and EACCES reported if none follows.
    assert.equal((await run("tether-tool", [], { env: env(`${denied}:${bin}`) })).stdout, "from bin\n");
    const noExec = spawnError(() =>
      spawn("tether-tool", ["x"], { env: env(denied), cwd: "/", stdin: false }, () => {}),
    );
    assert.equal(noExec.code, "EACCES");
    // The agent's PATH has `true`; the child's does not.
    const notFound = spawnError(() => spawn("true", ["true"], { env: env(dir), cwd: "/", stdin: false }, () => {}));
    assert.equal(notFound.code, "ENOENT");
  });

  test("a file without #! runs with /bin/sh, as execvp does", async () => {
    const script = path.join(dir, "no-shebang");
    writeFileSync(script, 'echo "sh ran $0 with $1"\n');
    chmodSync(script, 0o755);
    assert.equal((await run(script, ["one"])).stdout, `sh ran ${script} with one\n`);
  });

  test("stdin is /dev/null without a pipe, and a pipe that ends when closed", async () => {
    assert.equal((await run("readlink", ["/proc/self/fd/0"])).stdout, "/dev/null\n");
    assert.equal((await run("cat", [])).stdout, "");
    const piped = await run("/bin/sh", ["-c", "readlink /proc/self/fd/0; cat"], { input: "hello\n" });
    assert.match(piped.stdout, /^socket:\[\d+\]\nhello\n$/);
  });

  test("inheritOutput: the child writes to our own stdout and stderr, and no pipes come back", async () => {
    // A node process of its own spawns the child, so its stdout and stderr are ones we read.
    const script = `
      const { spawn } = require(${JSON.stringify(require.resolve("@tether/spawn"))});
      const env = Object.entries(process.env).map(([k, v]) => k + "=" + v);
      const child = spawn("/bin/sh", ["/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 3"],
        { env, cwd: "/", stdin: false, inheritOutput: true },
        (code) => process.stdout.write("exit " + code + " fds " + [child.stdout, child.stderr].join(",") + "\\n"));`;
    const parent = nodeSpawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    parent.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk;
    });
    parent.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk;
    });
    const [code] = await once(parent, "close");
    assert.equal(code, 0, stderr);
    assert.equal(stdout, "to-out\nexit 3 fds -1,-1\n");
    assert.equal(stderr, "to-err\n");
  });

  test("the child inherits no more fds than one Node spawns", async () => {
    // Only fds the test runner left open without close-on-exec show up in both.
    const node = nodeSpawn("ls", ["/proc/self/fd"], { stdio: ["ignore", "pipe", "pipe"] });
    let theirs = "";
    node.stdout.on("data", (chunk: Buffer) => {
      theirs += chunk;
    });
    await once(node, "close");
    assert.match(theirs, /^0\n1\n2\n/);
    assert.equal((await run("ls", ["/proc/self/fd"])).stdout, theirs);
  });

  test("many concurrent spawns, interleaved with Node's, each get their own exit and leak no fd", async () => {
    // Settle fds Node opens lazily (the SIGCHLD signal pipe...) before counting.
    await run("true", []);
    await once(nodeSpawn("true"), "close");
    const before = openFds();
    const ours = Array.from({ length: 50 }, (_, i) => run("/bin/sh", ["-c", `echo ${i}; exit ${i % 7}`]));
    // libuv reaps only its own children; ours must not be taken from us, nor theirs from libuv.
    const theirs = Array.from({ length: 10 }, async (_, i) => {
      const child = nodeSpawn("/bin/sh", ["-c", `exit ${i}`]);
      const [code] = await once(child, "exit");
      return code;
    });
    const results = await Promise.all(ours);
    for (const [i, result] of results.entries()) {
      assert.deepEqual([result.stdout, result.code], [`${i}\n`, i % 7]);
    }
    assert.deepEqual(await Promise.all(theirs), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const failures = Array.from({ length: 20 }, () =>
      spawnError(() => spawn("tether-no-such-program", ["x"], { env: baseEnv, cwd: "/", stdin: true }, () => {})),
    );
    assert.ok(failures.every((err) => err.code === "ENOENT"));
    // The pidfd of each child is closed once libuv closed its poll handle.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(openFds(), before);
  });
});

describe("withFsIds", { skip: !isRoot && "needs root to change file ids" }, () => {
  const nobody = { uid: 65534, gid: 65534, groups: [65534] };
  const dir = mkdtempSync(path.join(tmpdir(), "tether-fsids-"));
  chmodSync(dir, 0o755);
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a call runs with the user's file rights: root's 0700 directory is closed, what it creates is the user's", () => {
    const closed = path.join(dir, "closed");
    mkdirSync(closed, { mode: 0o700 });
    writeFileSync(path.join(closed, "secret"), "root's");
    const open = path.join(dir, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    assert.throws(() => withFsIds(nobody, () => writeFileSync(path.join(closed, "secret"), "mine")), {
      code: "EACCES",
    });
    assert.throws(() => withFsIds(nobody, () => rmSync(path.join(closed, "secret"))), { code: "EACCES" });
    withFsIds(nobody, () => writeFileSync(path.join(open, "made"), "x"));
    assert.equal(statSync(path.join(open, "made")).uid, 65534);
    assert.equal(statSync(path.join(open, "made")).gid, 65534);
    // Back to root's rights once it returned or threw.
    writeFileSync(path.join(closed, "after"), "root again");
    const status = readFileSync("/proc/self/status", "utf8");
    assert.match(status, /^Uid:\s+0\s+0\s+0\s+0$/m);
    assert.match(status, /^Gid:\s+0\s+0\s+0\s+0$/m);
    assert.equal(readFileSync(path.join(closed, "secret"), "utf8"), "root's");
  });

  test("refuses an async function, whose awaits would run with root's rights", () => {
    assert.throws(() => withFsIds(nobody, async () => {}), /synchronous/);
  });
});

describe("tether-exec-as", { skip: !isRoot && "needs root to switch users" }, () => {
  test("sets groups, gid and uid, then execs the program from PATH", async () => {
    const child = nodeSpawn(execAsPath, ["65534", "65534", "65534,5", "sh", "-c", "id -u; id -g; id -G"]);
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d;
    });
    const [code] = await once(child, "close");
    assert.deepEqual([code, out], [0, "65534\n65534\n65534 5\n"]);
  });

  test("refuses an id that would wrap (2^32) and one that is 'no change' (2^32-1)", async () => {
    for (const uid of ["4294967296", "4294967295", "-1", "x"]) {
      const child = nodeSpawn(execAsPath, [uid, "0", "", "true"]);
      const [code] = await once(child, "close");
      assert.equal(code, 127, uid);
    }
  });
});
