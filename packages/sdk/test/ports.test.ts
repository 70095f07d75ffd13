import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Agent, ListeningPort, PortEvent } from "../src/index.js";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";
import { startListener } from "./support/listener.js";

/** A generous bound on one awaited event: the agent polls every 250 ms. */
const EVENT_BOUND_MS = 5000;

let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: "sdk-ports-token" });
});
after(() => t.close());

/** Reads events from a watch until one matches, within the bound. */
async function nextMatching(
  events: AsyncIterator<PortEvent>,
  match: (event: PortEvent) => boolean,
  what: string,
): Promise<PortEvent> {
  const deadline = Date.now() + EVENT_BOUND_MS;
  for (;;) {
    const left = deadline - Date.now();
    const next = await Promise.race([
      events.next(),
      new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), Math.max(left, 0)).unref()),
    ]);
    if (next === "timeout") assert.fail(`no ${what} event within ${EVENT_BOUND_MS} ms`);
    if (next.done) assert.fail(`the watch ended before a ${what} event`);
    if (match(next.value)) return next.value;
  }
}

function find(ports: ListeningPort[], port: number, family: "ipv4" | "ipv6" = "ipv4"): ListeningPort | undefined {
  return ports.find((p) => p.port === port && p.family === family);
}

for (const transport of TRANSPORTS) {
  describe(`ports over ${transport}`, () => {
    let client: Agent;
    before(() => {
      client = t.client(transport);
    });

    test("list shows a listener started by the test, with its pid and command", async () => {
      const listener = await startListener(["127.0.0.1"], { tag: `ports-list-${transport}` });
      try {
        const port = find(await client.ports.list(), listener.port);
        assert.ok(port, `port ${listener.port} listed`);
        assert.equal(port.address, "127.0.0.1");
        assert.equal(port.loopback, true);
        assert.equal(port.pid, listener.pid);
        assert.equal(port.command, "node");
        assert.ok(port.args.includes(`ports-list-${transport}`), `args ${JSON.stringify(port.args)}`);
        assert.equal(port.uid, process.getuid?.());
        assert.equal(port.proxyFor, undefined);
      } finally {
        await listener.stop();
      }
    });

    test("watch gives a snapshot, then the listener opening, then closing", async () => {
      const abort = new AbortController();
      const events = client.ports.watch({ signal: abort.signal })[Symbol.asyncIterator]();
      try {
        const first = await nextMatching(events, () => true, "snapshot");
        assert.equal(first.type, "snapshot");
        const listener = await startListener(["0.0.0.0"]);
        const opened = await nextMatching(
          events,
          (e) => e.type === "opened" && e.port.port === listener.port,
          `opened ${listener.port}`,
        );
        assert.ok(opened.type === "opened");
        assert.equal(opened.port.pid, listener.pid);
        assert.equal(opened.port.address, "0.0.0.0");
        assert.equal(opened.port.loopback, false);
        await listener.stop();
        const closed = await nextMatching(
          events,
          (e) => e.type === "closed" && e.port.port === listener.port,
          `closed ${listener.port}`,
        );
        assert.ok(closed.type === "closed");
        assert.equal(closed.port.inode, opened.port.inode);
      } finally {
        abort.abort();
        await events.return?.(undefined);
      }
    });
  });
}

test("IPv4 and IPv6 listeners on the same port are two entries, each with its family", async (ctx) => {
  const client = t.client("tcp");
  let listener: Awaited<ReturnType<typeof startListener>>;
  try {
    listener = await startListener(["127.0.0.1", "::1"]);
  } catch (err) {
    ctx.skip(`no IPv6 loopback here: ${(err as Error).message}`);
    return;
  }
  try {
    const ports = await client.ports.list();
    const v4 = find(ports, listener.port, "ipv4");
    const v6 = find(ports, listener.port, "ipv6");
    assert.equal(v4?.address, "127.0.0.1");
    assert.equal(v6?.address, "::1");
    assert.equal(v4?.pid, listener.pid);
    assert.equal(v6?.pid, listener.pid);
    assert.ok(v4?.loopback && v6?.loopback);
    assert.notEqual(v4?.inode, v6?.inode);
  } finally {
    await listener.stop();
  }
});

test("a watch ended by its signal stops quietly", async () => {
  const client = t.client("tcp");
  const abort = new AbortController();
  const seen: PortEvent[] = [];
  const done = (async () => {
    for await (const event of client.ports.watch({ signal: abort.signal })) seen.push(event);
  })();
  while (seen.length === 0) await new Promise((r) => setTimeout(r, 10));
  abort.abort();
  await done;
  assert.equal(seen[0].type, "snapshot");
});
