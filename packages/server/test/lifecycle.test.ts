import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Sandbox } from "e2b";
import { eventually, request } from "./support/http.js";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

const skip = await dockerSkipReason();
const servers: TestServer[] = [];
after(async () => {
  for (const s of servers.reverse()) await s.close().catch(() => {});
});

/** SDK options for a server and key (set per call: these tests run more than one server). */
function opts(server: TestServer, apiKey: string) {
  return { apiKey, apiUrl: server.url, sandboxUrl: server.url };
}

test("a restarted server adopts running sandboxes: still listed, still reachable, processes kept", {
  skip,
}, async () => {
  const first = await new TestServer().start();
  const { key } = first.server.keys.create({ team: "alpha" });
  first.server.templates.put("debian", DEBIAN);
  const sandbox = await Sandbox.create("debian", opts(first, key));
  // timeoutMs 0: as in envd, a command dies at its deadline (the SDK's default is 60 s).
  const sleeper = await sandbox.commands.run("sleep 600", { background: true, timeoutMs: 0 });
  await first.stop();
  const down = await request(first.url, { path: "/health" }).catch((err: Error) => err);
  assert.ok(down instanceof Error, "the first server is gone");

  const second = await new TestServer().start({}, first.home);
  servers.push(second);
  const again = await Sandbox.connect(sandbox.sandboxId, opts(second, key));
  const pids = (await again.commands.list()).map((p) => p.pid);
  assert.ok(pids.includes(sleeper.pid), `pid ${sleeper.pid} in ${pids.join(", ")}`);
  assert.equal((await again.commands.run("echo still here")).stdout, "still here\n");
  const listed = await Sandbox.list(opts(second, key)).nextItems();
  assert.deepEqual(
    listed.map((s) => s.sandboxId),
    [sandbox.sandboxId],
  );
});

test("a sandbox made by the CLI belongs to the default team, and one made by the server is the CLI's to see", {
  skip,
}, async () => {
  const server = await new TestServer().start();
  servers.push(server);
  const byCli = await server.sandboxes.create(DEBIAN);
  const fallback = server.server.keys.create().key;
  const alpha = server.server.keys.create({ team: "alpha" }).key;
  const seen = await Sandbox.list(opts(server, fallback)).nextItems();
  assert.deepEqual(
    seen.map((s) => s.sandboxId),
    [byCli.id],
  );
  assert.deepEqual(await Sandbox.list(opts(server, alpha)).nextItems(), []);
  const connected = await Sandbox.connect(byCli.id, opts(server, fallback));
  assert.equal((await connected.commands.run("echo from the server")).stdout, "from the server\n");

  const byServer = await Sandbox.create(DEBIAN, opts(server, alpha));
  const records = await server.sandboxes.list();
  assert.ok(records.some((r) => r.id === byServer.sandboxId && r.state === "running"));
});

test("over a team's limit the API answers 429 with Retry-After, and the SDK's retry gets through once there is room", {
  skip,
}, async () => {
  const server = await new TestServer().start({ limits: { maxSandboxes: 1 } });
  servers.push(server);
  const { key } = server.server.keys.create({ team: "alpha" });
  const first = await Sandbox.create(DEBIAN, opts(server, key));

  const refused = await request(server.url, {
    method: "POST",
    path: "/v2/sandboxes",
    headers: { "x-api-key": key, "content-type": "application/json" },
    body: JSON.stringify({ templateID: DEBIAN }),
  });
  assert.equal(refused.status, 429);
  assert.match(String(refused.headers["retry-after"]), /^\d+$/);
  assert.equal(JSON.parse(refused.body).code, 429);

  const rejections = async () => {
    const text = (await request(server.url, { path: "/metrics", headers: { "x-api-key": key } })).body;
    const m = /tether_http_requests_total\{method="POST",route="\/v2\/sandboxes",status="429"\} (\d+)/.exec(text);
    return Number(m?.[1] ?? 0);
  };
  const before = await rejections();
  const second = Sandbox.create(DEBIAN, opts(server, key));
  // The SDK was told to wait: make room, and its retry succeeds.
  await eventually("the SDK's create to be refused", async () => ((await rejections()) > before ? true : undefined));
  await first.kill();
  const made = await second;
  assert.equal((await made.commands.run("echo made")).stdout, "made\n");
});

test("a burst of creates at once: all succeed, those beyond the in-flight limit wait in line", { skip }, async () => {
  const server = await new TestServer().start({ limits: { maxCreatesInFlight: 2 } });
  servers.push(server);
  const { key } = server.server.keys.create({ team: "burst" });
  const gauges = async () => {
    const text = (await request(server.url, { path: "/metrics", headers: { "x-api-key": key } })).body;
    const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
    return { flying: value("tether_sandbox_creates_in_flight"), queued: value("tether_sandbox_creates_queued") };
  };
  let maxFlying = 0;
  let maxQueued = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const g = await gauges();
      maxFlying = Math.max(maxFlying, g.flying);
      maxQueued = Math.max(maxQueued, g.queued);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const made = await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const sandbox = await Sandbox.create(DEBIAN, opts(server, key));
      assert.equal((await sandbox.commands.run(`echo ${i}`)).stdout, `${i}\n`);
      return sandbox;
    }),
  );
  sampling = false;
  await sampler;
  assert.equal(new Set(made.map((s) => s.sandboxId)).size, 8);
  assert.ok(maxFlying <= 2, `at most 2 under way, saw ${maxFlying}`);
  assert.ok(maxQueued > 0, "some waited in line");
  await Promise.all(made.map((s) => s.kill()));
  assert.deepEqual(await Sandbox.list(opts(server, key)).nextItems(), []);
});
