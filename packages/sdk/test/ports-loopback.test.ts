import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Agent, type ListeningPort } from "../src/index.js";
import { type AgentProcess, spawnAgentProcess } from "./support/agent-process.js";
import { type ListenerProcess, startListener } from "./support/listener.js";

const run = promisify(execFile);

/**
 * Two network namespaces made for this file, joined by a veth pair: "sandbox" runs tetherd
 * with --expose-loopback, "peer" plays the host. The addresses (10.213.0.0/24 and the ULA
 * fd00:7e7e::/64) exist only inside these two namespaces, so no traffic leaves the machine.
 */
const SANDBOX = `tether-sbx-${process.pid}`;
const PEER = `tether-peer-${process.pid}`;
const SANDBOX_V4 = "10.213.0.1";
const SANDBOX_V6 = "fd00:7e7e::1";
const IN_SANDBOX = ["ip", "netns", "exec", SANDBOX];
/** A generous bound on the proxies following a change (the agent polls every 250 ms). */
const BOUND_MS = 5000;

async function ip(...args: string[]): Promise<void> {
  await run("ip", args);
}

async function makeNamespaces(): Promise<void> {
  await ip("netns", "add", SANDBOX);
  await ip("netns", "add", PEER);
  await ip("link", "add", "vsbx0", "netns", SANDBOX, "type", "veth", "peer", "name", "vpeer0", "netns", PEER);
  for (const [ns, dev, v4, v6] of [
    [SANDBOX, "vsbx0", `${SANDBOX_V4}/24`, `${SANDBOX_V6}/64`],
    [PEER, "vpeer0", "10.213.0.2/24", "fd00:7e7e::2/64"],
  ]) {
    await ip("-n", ns, "link", "set", "lo", "up");
    await ip("-n", ns, "addr", "add", v4, "dev", dev);
    await ip("-n", ns, "addr", "add", v6, "dev", dev, "nodad");
    await ip("-n", ns, "link", "set", dev, "up");
  }
}

async function removeNamespaces(): Promise<void> {
  for (const ns of [SANDBOX, PEER]) await ip("netns", "del", ns).catch(() => {});
}

/** Why this file cannot run here, or undefined. In CI it must run. */
async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  try {
    await makeNamespaces();
    return undefined;
  } catch (err) {
    await removeNamespaces();
    const reason = `cannot make network namespaces here: ${(err as Error).message.trim()}`;
    if (process.env.CI === "true") throw new Error(reason);
    return reason;
  }
}

/** Connects from the peer namespace and returns what the server said, or the error code. */
async function fetchFromPeer(host: string, port: number): Promise<string> {
  const script = `
const s = require("node:net").connect(Number(process.argv[2]), process.argv[1]);
let out = "";
s.setEncoding("utf8").on("data", (d) => (out += d)).on("end", () => process.stdout.write(out));
s.on("error", (e) => process.stdout.write("ERR " + e.code));`;
  const { stdout } = await run("ip", ["netns", "exec", PEER, process.execPath, "-e", script, host, String(port)]);
  return stdout;
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + BOUND_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${BOUND_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const proxy = (ports: ListeningPort[], address: string, port: number) =>
  ports.find((p) => p.address === address && p.port === port && p.proxyFor !== undefined);

const skip = await skipReason();
if (skip) console.log(`# skipping loopback re-exposure tests: ${skip}`);

describe("loopback re-exposure in a network namespace", { skip }, () => {
  let dir: string;
  let agent: AgentProcess;
  let client: Agent;
  const listeners: ListenerProcess[] = [];
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "tether-netns-"));
    const socket = path.join(dir, "agent.sock");
    agent = await spawnAgentProcess(["--port", "0", "--socket", socket, "--expose-loopback"], { prefix: IN_SANDBOX });
    client = new Agent({ socket });
  });
  after(async () => {
    client?.close();
    for (const l of listeners) await l.stop();
    await agent?.stop();
    await removeNamespaces();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function listen(addresses: string[], reply: string, port?: number): Promise<ListenerProcess> {
    const listener = await startListener(addresses, { reply, port, prefix: IN_SANDBOX });
    listeners.push(listener);
    return listener;
  }

  test("127.0.0.1:P and [::1]:P held by two services: one proxy per family, no fight, each reaches its own", async () => {
    const v4 = await listen(["127.0.0.1"], "v4 service");
    const v6 = await listen(["::1"], "v6 service", v4.port);
    const port = v4.port;
    const ports = await eventually("both proxies", async () => {
      const list = await client.ports.list();
      return proxy(list, SANDBOX_V4, port) && proxy(list, SANDBOX_V6, port) ? list : undefined;
    });
    assert.equal(proxy(ports, SANDBOX_V4, port)?.proxyFor, `127.0.0.1:${port}`);
    assert.equal(proxy(ports, SANDBOX_V6, port)?.proxyFor, `[::1]:${port}`);
    assert.equal(proxy(ports, SANDBOX_V4, port)?.pid, agent.pid);
    assert.equal(await fetchFromPeer(SANDBOX_V4, port), "v4 service");
    assert.equal(await fetchFromPeer(SANDBOX_V6, port), "v6 service");
    // The services themselves still hold their loopback sockets, untouched.
    assert.equal(ports.find((p) => p.address === "127.0.0.1" && p.port === port)?.pid, v4.pid);
    assert.equal(ports.find((p) => p.address === "::1" && p.port === port)?.pid, v6.pid);

    // The v4 service goes: its proxy goes with it, the v6 one stays.
    await v4.stop();
    await eventually("the v4 proxy gone", async () =>
      proxy(await client.ports.list(), SANDBOX_V4, port) ? undefined : true,
    );
    assert.equal(await fetchFromPeer(SANDBOX_V4, port), "ERR ECONNREFUSED");
    assert.equal(await fetchFromPeer(SANDBOX_V6, port), "v6 service");
  });

  test("an address a real listener already covers gets no proxy ([::1]:Q beside 0.0.0.0:Q)", async () => {
    const loop6 = await listen(["::1"], "v6 loopback service");
    await listen(["0.0.0.0"], "v4 wildcard service", loop6.port);
    const port = loop6.port;
    const ports = await eventually("the v6 proxy", async () => {
      const list = await client.ports.list();
      return proxy(list, SANDBOX_V6, port) ? list : undefined;
    });
    assert.equal(proxy(ports, SANDBOX_V4, port), undefined);
    assert.equal(await fetchFromPeer(SANDBOX_V4, port), "v4 wildcard service");
    assert.equal(await fetchFromPeer(SANDBOX_V6, port), "v6 loopback service");
  });

  test("the agent's own loopback listener is not re-exposed", async () => {
    const ports = await client.ports.list();
    const own = ports.find((p) => p.pid === agent.pid && p.loopback && p.proxyFor === undefined);
    assert.ok(own, "the agent's TCP listener is listed");
    assert.equal(
      ports.find((p) => p.port === own.port && !p.loopback),
      undefined,
      "nothing listens on its port beyond loopback",
    );
    assert.equal(await fetchFromPeer(SANDBOX_V4, own.port), "ERR ECONNREFUSED");
  });

  test("data flows both ways through a proxy, half-close included", async () => {
    // An echo that answers after the client half-closes: needs FIN to cross the proxy.
    const script = `
const net = require("node:net");
const server = net.createServer({ allowHalfOpen: true }, (s) => {
  let n = 0;
  s.on("data", (d) => (n += d.length)).on("end", () => s.end("got " + n));
});
server.listen(0, "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"));`;
    const child = spawn(IN_SANDBOX[0], [...IN_SANDBOX.slice(1), process.execPath, "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const port = await new Promise<number>((resolve) =>
        child.stdout.setEncoding("utf8").once("data", (t: string) => resolve(Number(t.trim()))),
      );
      await eventually("the proxy", async () => proxy(await client.ports.list(), SANDBOX_V4, port));
      const sender = `
const s = require("node:net").connect(Number(process.argv[2]), process.argv[1]);
let out = "";
s.setEncoding("utf8").on("data", (d) => (out += d)).on("end", () => process.stdout.write(out));
s.end(Buffer.alloc(5 << 20, 1));`;
      const { stdout } = await run("ip", [
        "netns",
        "exec",
        PEER,
        process.execPath,
        "-e",
        sender,
        SANDBOX_V4,
        String(port),
      ]);
      assert.equal(stdout, `got ${5 << 20}`);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
