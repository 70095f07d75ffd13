import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AgentLimits } from "../src/limits.js";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { spawnAgentProcess } from "./support/agent-process.js";
import { collect } from "./support/process-events.js";

const TOKEN = "hygiene-token-31aa";

async function withAgent(limits: Partial<AgentLimits>, body: (t: TestAgent) => Promise<void>): Promise<void> {
  const t = await startTestAgent({ accessToken: TOKEN, limits });
  try {
    await body(t);
  } finally {
    await t.close();
  }
}

/** Resolves true once `emitter` emitted `event`, false if it did not within `ms` (a bound, not a measure). */
function within(emitter: NodeJS.EventEmitter, event: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    emitter.once(event, () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function connect(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => resolve(socket));
    socket.once("error", reject);
  });
}

describe("connections that send no request", () => {
  test("a silent connection is closed", () =>
    withAgent({ headersTimeoutMs: 200 }, async (t) => {
      const socket = await connect(t.url);
      socket.on("error", () => {});
      assert.ok(await within(socket, "close", 10_000), "the silent connection is still open");
    }));

  test("a connection trickling its request head (slowloris) is closed", () =>
    withAgent({ headersTimeoutMs: 200 }, async (t) => {
      const socket = await connect(t.url);
      socket.on("error", () => {});
      socket.write("GET /envs HTTP/1.1\r\nHost: agent\r\n");
      const closed = within(socket, "close", 10_000);
      const trickle = setInterval(() => socket.writable && socket.write("X-Slow: 1\r\n"), 50);
      try {
        assert.ok(await closed, "the slow connection is still open");
      } finally {
        clearInterval(trickle);
      }
    }));

  test("an HTTP/2 session left idle is closed; one whose stream is quiet for longer is not", () =>
    withAgent({ headersTimeoutMs: 200, connectionIdleMs: 200 }, async (t) => {
      // A command that prints nothing for several idle periods keeps its session.
      const quiet = await collect(
        t.process.start({ process: { cmd: "/bin/sh", args: ["-c", "sleep 1.5; echo done"] } }),
      );
      assert.equal(quiet.stdout, "done\n");
      const session = http2.connect(t.url);
      session.on("error", () => {});
      const closed = within(session, "close", 10_000);
      const stream = session.request({ ":path": "/health" });
      stream.resume();
      await within(stream, "close", 10_000);
      assert.ok(await closed, "the idle session is still open");
    }));

  test("past the connection cap, new connections are refused at once", () =>
    withAgent({ maxConnections: 4 }, async (t) => {
      const sockets = await Promise.all(Array.from({ length: 8 }, () => connect(t.url)));
      const open = new Set(sockets);
      for (const socket of sockets) {
        socket.on("error", () => {});
        socket.once("close", () => open.delete(socket));
      }
      for (let i = 0; i < 200 && open.size > 4; i++) await sleep(20);
      assert.equal(open.size, 4);
      // The kept ones are still served.
      for (const socket of sockets) socket.destroy();
      for (let i = 0; i < 100; i++) {
        const res = await fetch(`${t.url}/health`).catch(() => undefined);
        if (res?.status === 204) return;
        await sleep(20);
      }
      assert.fail("the agent no longer answers once the extra connections are gone");
    }));
});

/** Opens and at once resets `count` streams on one session; resolves once the session is gone. */
async function rapidReset(url: string, count: number): Promise<{ goaway?: number }> {
  const session = http2.connect(url);
  const result: { goaway?: number } = {};
  session.on("error", () => {});
  session.on("goaway", (code) => {
    result.goaway = code;
  });
  const closed = within(session, "close", 30_000);
  await within(session, "connect", 10_000);
  for (let i = 0; i < count && !session.closed && !session.destroyed; i++) {
    const stream = session.request({
      ":method": "POST",
      ":path": "/process.Process/List",
      "content-type": "application/proto",
    });
    stream.on("error", () => {});
    stream.close(http2.constants.NGHTTP2_CANCEL);
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  // A client that is not cut off ends its own session, as an attacker would to start another.
  if (!(await Promise.race([closed, sleep(2000).then(() => false)]))) session.destroy();
  return result;
}

describe("HTTP/2 stream resets", () => {
  test("a client resetting streams in a flood is told to calm down and cut off", () =>
    withAgent({ resetBurst: 50, resetsPerSecond: 1 }, async (t) => {
      const { goaway } = await rapidReset(t.url, 2000);
      assert.equal(goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      assert.equal((await fetch(`${t.url}/health`)).status, 204);
    }));

  test("no descriptor stays behind an attacking session (a real agent process)", async () => {
    const agent = await spawnAgentProcess(["--port", "0", "--access-token", TOKEN]);
    try {
      const fds = () => readdirSync(`/proc/${agent.pid}/fd`).length;
      const url = agent.url as string;
      assert.equal((await fetch(`${url}/health`, { keepalive: false })).status, 204);
      const before = fds();
      for (let session = 0; session < 4; session++) await rapidReset(url, 3000);
      // The agent lets go of a closed connection a moment after the client sees it close.
      let after = fds();
      for (let i = 0; i < 100 && after > before; i++) {
        await sleep(20);
        after = fds();
      }
      assert.ok(after <= before, `${after - before} more descriptors after four attacking sessions`);
    } finally {
      await agent.stop();
    }
  });
});

test("an HTTP/2 session that keeps asking without the token is cut off", () =>
  withAgent({}, async (t) => {
    const session = http2.connect(t.url);
    let goaway: number | undefined;
    session.on("error", () => {});
    session.on("goaway", (code) => {
      goaway = code;
    });
    let refused = 0;
    for (let batch = 0; batch < 30 && !session.closed && !session.destroyed; batch++) {
      const answers = Array.from({ length: 20 }, () => {
        const stream = session.request({ ":path": "/envs" });
        stream.on("error", () => {});
        stream.on("response", (headers) => {
          if (headers[":status"] === 401) refused++;
        });
        stream.resume();
        return within(stream, "close", 10_000);
      });
      await Promise.all(answers);
    }
    await within(session, "close", 10_000);
    assert.equal(goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    assert.ok(refused < 600, `${refused} refusals on one session`);
    // Others, with the token, are served as before.
    const envs = await fetch(`${t.url}/envs`, { headers: { "x-access-token": TOKEN } });
    assert.equal(envs.status, 200);
  }));

test("silent connections past the descriptor limit neither crash the agent nor lock out its other listener", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-fds-"));
  const socket = path.join(dir, "agent.sock");
  // 256 descriptors: the agent keeps 64 connections per listener.
  const agent = await spawnAgentProcess(["--port", "0", "--socket", socket, "--access-token", TOKEN], {
    prefix: ["prlimit", "--nofile=256:256", "--"],
  });
  const attackers: net.Socket[] = [];
  try {
    const { hostname, port } = new URL(agent.url as string);
    for (let i = 0; i < 300; i++) {
      const attacker = net.connect(Number(port), hostname);
      attacker.on("error", () => {});
      attackers.push(attacker);
    }
    await Promise.all(attackers.map((attacker) => within(attacker, "connect", 10_000)));
    await sleep(200);
    assert.equal(agent.child.exitCode, null, "the agent exited");
    assert.ok(readdirSync(`/proc/${agent.pid}/fd`).length < 200);
    const status = await new Promise<number>((resolve, reject) => {
      const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
      session.on("error", reject);
      const stream = session.request({ ":path": "/health" });
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("close", () => session.close());
      stream.resume();
    });
    assert.equal(status, 204);
  } finally {
    for (const attacker of attackers) attacker.destroy();
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
