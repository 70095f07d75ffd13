import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { type RunningAgent, startAgent } from "../src/agent.js";
import { isGoneOrZombie, waitGone } from "../src/agent-process.js";
import { MAX_FRAME_BYTES } from "../src/cocoon/frames.js";
import { listenVsock } from "../src/cocoon/vsock.js";

type Frame = { type: string; [key: string]: unknown };

let agent: RunningAgent;
let scratch: string;
let socket: string;
let root: string;

/** Opens a session, sends `lines` (objects become JSON lines), and collects frames until the agent closes. */
function session(
  lines: (object | string)[],
  options: { onFrame?: (frame: Frame, conn: net.Socket) => void; target?: net.NetConnectOpts } = {},
): Promise<Frame[]> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(options.target ?? { path: socket });
    const frames: Frame[] = [];
    let buffered = "";
    conn.on("connect", () => {
      for (const line of lines) conn.write(typeof line === "string" ? line : `${JSON.stringify(line)}\n`);
    });
    conn.setEncoding("utf8");
    conn.on("data", (text: string) => {
      buffered += text;
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const part of parts) {
        const frame = JSON.parse(part) as Frame;
        frames.push(frame);
        options.onFrame?.(frame, conn);
      }
    });
    conn.on("error", reject);
    conn.on("close", () => resolve(frames));
  });
}

const TOKEN = "cocoon-test-token";
const b64 = (text: string) => Buffer.from(text).toString("base64");
const text = (frames: Frame[], type: string) =>
  Buffer.concat(frames.filter((f) => f.type === type).map((f) => Buffer.from(f.data as string, "base64"))).toString();
const terminal = (frames: Frame[]) => frames.filter((f) => f.type === "exit" || f.type === "error");

describe("cocoon-style line-JSON exec", () => {
  before(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "tether-cocoon-"));
    socket = path.join(scratch, "cocoon.sock");
    root = path.join(scratch, "root");
    mkdirSync(path.join(root, "etc"), { recursive: true });
    mkdirSync(path.join(root, "var/lib/systemd"), { recursive: true });
    agent = await startAgent({
      port: false,
      accessToken: TOKEN,
      logger: pino({ level: process.env.TETHER_TEST_LOG ?? "silent" }),
      cocoon: {
        socket,
        tcp: { host: "127.0.0.1", port: 0 },
        reseedPaths: {
          urandom: path.join(root, "urandom"),
          seedFiles: [path.join(root, "var/lib/systemd/random-seed"), path.join(root, "var/lib/urandom/random-seed")],
          machineId: path.join(root, "etc/machine-id"),
        },
      },
    });
  });
  after(async () => {
    await agent?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test("echo through stdin: started, stdout, then exit without exit_code", async () => {
    const frames = await session([
      { type: "exec", argv: ["cat"] },
      { type: "stdin", data: b64("hello ") },
      { type: "stdin", data: b64("cocoon\n") },
      { type: "stdin_close" },
    ]);
    assert.equal(frames[0].type, "started");
    assert.equal(typeof frames[0].pid, "number");
    assert.equal(text(frames, "stdout"), "hello cocoon\n");
    assert.deepEqual(frames.at(-1), { type: "exit" });
    assert.equal(terminal(frames).length, 1);
  });

  test("exit codes and stderr pass through", async () => {
    const frames = await session([
      { type: "exec", argv: ["sh", "-c", "echo oops >&2; exit 3"] },
      { type: "stdin_close" },
    ]);
    assert.equal(text(frames, "stderr"), "oops\n");
    assert.deepEqual(frames.at(-1), { type: "exit", exit_code: 3 });
    const killed = await session([{ type: "exec", argv: ["sh", "-c", "kill -9 $$"] }]);
    assert.deepEqual(killed.at(-1), { type: "exit", exit_code: 137 });
  });

  test("env merges over the agent's environment, the caller wins", async () => {
    process.env.COCOON_FROM_AGENT = "agent";
    process.env.COCOON_BOTH = "agent";
    try {
      const frames = await session([
        {
          type: "exec",
          argv: ["sh", "-c", 'echo "$COCOON_FROM_AGENT $COCOON_BOTH $COCOON_CALLER"'],
          env: { COCOON_BOTH: "caller", COCOON_CALLER: "only-caller" },
        },
      ]);
      assert.equal(text(frames, "stdout"), "agent caller only-caller\n");
    } finally {
      delete process.env.COCOON_FROM_AGENT;
      delete process.env.COCOON_BOTH;
    }
  });

  test("unknown binary, empty argv and bad first frames are errors (and only errors)", async () => {
    const cases: [object | string, RegExp][] = [
      [{ type: "exec", argv: ["/no/such/binary"] }, /not found: \/no\/such\/binary/],
      [{ type: "exec", argv: [] }, /argv is empty/],
      [{ type: "exec" }, /bad first frame/],
      [{ type: "stdin", data: "" }, /bad first frame/],
      ["not json\n", /not JSON/],
      [{ type: "exec", argv: ["true"], env: { "A=B": "x" } }, /env\["A=B"\]/],
    ];
    for (const [first, message] of cases) {
      const frames = await session([first]);
      assert.equal(frames.length, 1, JSON.stringify(frames));
      assert.equal(frames[0].type, "error");
      assert.match(frames[0].message as string, message);
    }
  });

  test("malformed stdin is an error and the command is killed", async () => {
    let pid = 0;
    const frames = await session(
      [
        { type: "exec", argv: ["sleep", "300"] },
        { type: "stdin", data: "!!not base64!!" },
      ],
      {
        onFrame(frame) {
          if (frame.type === "started") pid = frame.pid as number;
        },
      },
    );
    assert.equal(frames.at(-1)?.type, "error");
    assert.match(frames.at(-1)?.message as string, /bad stdin frame/);
    assert.equal(terminal(frames).length, 1);
    assert.ok(await waitGone(pid), `process ${pid} should be gone`);
  });

  test("a frame longer than 8 MiB is an error and closes the session", async () => {
    const frames = await session([{ type: "exec", argv: ["cat"] }, "x".repeat(MAX_FRAME_BYTES + 10)]);
    assert.equal(frames.at(-1)?.type, "error");
    assert.match(frames.at(-1)?.message as string, /longer than 8388608 bytes/);
    const first = await session([`{"type":"exec","argv":["${"a".repeat(MAX_FRAME_BYTES)}"]}\n`]);
    assert.deepEqual(
      first.map((f) => f.type),
      ["error"],
    );
  });

  test("a disconnect kills the whole process group", async () => {
    let grandchild = 0;
    let child = 0;
    await session([{ type: "exec", argv: ["sh", "-c", "sleep 300 & echo $!; wait"] }], {
      onFrame(frame, conn) {
        if (frame.type === "started") child = frame.pid as number;
        if (frame.type === "stdout") {
          grandchild = Number(
            Buffer.from(frame.data as string, "base64")
              .toString()
              .trim(),
          );
          conn.destroy();
        }
      },
    });
    assert.ok(grandchild > 0);
    assert.ok(await waitGone(grandchild), `grandchild ${grandchild} should be gone`);
    assert.ok(await waitGone(child), `child ${child} should be gone`);
  });

  test("a daemonised grandchild does not hold the session open", async () => {
    let daemon = 0;
    // The daemon leaves the group (setsid) and keeps the stdout pipe open.
    const frames = await session([{ type: "exec", argv: ["sh", "-c", "setsid sleep 300 & echo $!; exit 4"] }], {
      onFrame(frame) {
        if (frame.type === "stdout")
          daemon = Number(
            Buffer.from(frame.data as string, "base64")
              .toString()
              .trim(),
          );
      },
    });
    try {
      assert.deepEqual(frames.at(-1), { type: "exit", exit_code: 4 });
      assert.ok(daemon > 0 && !isGoneOrZombie(daemon), "the daemon outlives its session");
    } finally {
      if (daemon > 0) process.kill(daemon, "SIGKILL");
    }
  });

  test("reseed mixes entropy in, drops saved seeds and writes a fresh machine-id", async () => {
    const seed = path.join(root, "var/lib/systemd/random-seed");
    const machineId = path.join(root, "etc/machine-id");
    writeFileSync(seed, randomBytes(512));
    writeFileSync(machineId, "0123456789abcdef0123456789abcdef\n");
    const entropy = randomBytes(512);
    const frames = await session([{ type: "reseed", data: entropy.toString("base64"), regen_machine_id: true }]);
    assert.deepEqual(frames, [{ type: "exit" }]);
    assert.deepEqual(readFileSync(path.join(root, "urandom")), entropy);
    assert.equal(existsSync(seed), false);
    const id = readFileSync(machineId, "utf8");
    assert.match(id, /^[0-9a-f]{32}\n$/);
    assert.notEqual(id, "0123456789abcdef0123456789abcdef\n");

    const kept = await session([{ type: "reseed", data: randomBytes(16).toString("base64") }]);
    assert.deepEqual(kept, [{ type: "exit" }]);
    assert.equal(readFileSync(machineId, "utf8"), id, "no regen_machine_id: machine-id kept");

    const tooMuch = await session([{ type: "reseed", data: randomBytes(513).toString("base64") }]);
    assert.equal(tooMuch[0].type, "error");
    assert.match(tooMuch[0].message as string, /at most 512/);
  });

  test("the TCP listener runs the same sessions, after an auth frame with the agent's token", async () => {
    const tcp = agent.cocoon?.tcp;
    assert.ok(tcp);
    const target = { host: tcp.address, port: tcp.port };
    const marker = path.join(scratch, "ran-without-token");
    const frames = await session(
      [
        { type: "auth", token: TOKEN },
        { type: "exec", argv: ["echo", "over tcp"] },
      ],
      {
        target,
      },
    );
    assert.equal(text(frames, "stdout"), "over tcp\n");
    assert.deepEqual(frames.at(-1), { type: "exit" });

    for (const first of [[], [{ type: "auth", token: "wrong" }], [{ type: "auth", token: TOKEN.slice(0, -1) }]]) {
      const refused = await session([...first, { type: "exec", argv: ["touch", marker] }], { target });
      assert.deepEqual(
        refused.map((f) => f.type),
        ["error"],
        JSON.stringify(first),
      );
      assert.match(refused[0].message as string, /unauthenticated/);
    }
    const reseed = await session([{ type: "reseed", data: b64("x") }], { target });
    assert.match(reseed[0].message as string, /unauthenticated/);
    assert.equal(existsSync(marker), false, "nothing ran without the token");

    // The unix socket (mode 0600) needs no auth frame, and takes a right one.
    const unix = await session([
      { type: "auth", token: TOKEN },
      { type: "exec", argv: ["echo", "unix"] },
    ]);
    assert.equal(text(unix, "stdout"), "unix\n");
  });

  test("TCP beyond loopback is refused unless asked for as insecure", async () => {
    const options = { port: false as const, logLevel: "silent" };
    await assert.rejects(
      startAgent({ ...options, cocoon: { tcp: { host: "0.0.0.0", port: 0 } } }),
      /cocoon TCP on 0\.0\.0\.0:0 .*--cocoon-tcp-insecure/,
    );
    const insecure = await startAgent({ ...options, cocoon: { tcp: { host: "0.0.0.0", port: 0, insecure: true } } });
    assert.ok((insecure.cocoon?.tcp?.port ?? 0) > 0);
    await insecure.close();
    const loopback = await startAgent({ ...options, cocoon: { tcp: { host: "::1", port: 0 } } }).catch(
      (err: Error) => err,
    );
    if (loopback instanceof Error) assert.doesNotMatch(loopback.message, /insecure/);
    else await loopback.close();
  });

  for (const transport of ["unix", "tcp"] as const) {
    test(`${transport}: a disconnect while a stdin write waits (the command reads no stdin) kills the group`, async () => {
      let grandchild = 0;
      let child = 0;
      const stdin = randomBytes(32 << 10).toString("base64");
      const tcp = agent.cocoon?.tcp;
      assert.ok(tcp);
      const target = transport === "tcp" ? { host: tcp.address, port: tcp.port } : undefined;
      const exec = { type: "exec", argv: ["sh", "-c", "sleep 300 & echo $!; wait"] };
      await session(transport === "tcp" ? [{ type: "auth", token: TOKEN }, exec] : [exec], {
        target,
        onFrame(frame, conn) {
          if (frame.type === "started") child = frame.pid as number;
          if (frame.type === "stdout") {
            grandchild = Number(Buffer.from(frame.data as string, "base64").toString());
            // More stdin than the 64 KiB pipe nobody reads holds; once the fourth frame is in the
            // kernel (the agent is then stuck writing the third), the client goes away.
            for (let i = 0; i < 16; i++) {
              const line = `${JSON.stringify({ type: "stdin", data: stdin })}\n`;
              conn.write(line, i === 3 ? () => conn.destroy() : undefined);
            }
          }
        },
      });
      assert.ok(grandchild > 0);
      assert.ok(await waitGone(grandchild), `grandchild ${grandchild} should be gone`);
      assert.ok(await waitGone(child), `child ${child} should be gone`);
    });
  }

  test("a half-close after exec ends the session with an error frame", async () => {
    let child = 0;
    const frames = await session([{ type: "exec", argv: ["sleep", "300"] }], {
      onFrame(frame, conn) {
        if (frame.type === "started") {
          child = frame.pid as number;
          conn.end();
        }
      },
    });
    assert.deepEqual(
      frames.map((f) => f.type),
      ["started", "error"],
    );
    assert.match(frames[1].message as string, /half-closed.*stdin_close/);
    assert.ok(await waitGone(child), `child ${child} should be gone`);
  });

  test("vsock: bind, listen and accept set up (nothing here can connect)", async (t) => {
    let server: Awaited<ReturnType<typeof listenVsock>>;
    try {
      server = await listenVsock(0, { onConnection: () => {}, onRejected: () => {}, onError: () => {} });
    } catch (err) {
      const message = (err as Error).message;
      if (/EAFNOSUPPORT|Address family not supported|vsock device/.test(message) && !process.env.CI) {
        t.skip(`this kernel cannot listen on AF_VSOCK: ${message}`);
        return;
      }
      throw err;
    }
    assert.ok(server.port > 0);
    server.close();
    // The port is free again once closed.
    const again = await listenVsock(server.port, { onConnection: () => {}, onRejected: () => {}, onError: () => {} });
    assert.equal(again.port, server.port);
    again.close();
  });
});
