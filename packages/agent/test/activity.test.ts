import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { collect } from "./support/process-events.js";

const TOKEN = "activity-token";
let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: TOKEN });
});
after(async () => {
  await t.close();
});

async function activity(): Promise<{ lastActivity: number; activeRequests: number }> {
  const res = await fetch(`${t.url}/activity`, { headers: { "x-access-token": TOKEN } });
  assert.equal(res.status, 200);
  return (await res.json()) as { lastActivity: number; activeRequests: number };
}

test("GET /activity needs the token", async () => {
  const res = await fetch(`${t.url}/activity`);
  assert.equal(res.status, 401);
});

test("asking for the activity is not activity", async () => {
  const first = await activity();
  await new Promise((r) => setTimeout(r, 30));
  const second = await activity();
  assert.equal(second.lastActivity, first.lastActivity);
  assert.equal(second.activeRequests, 0);
});

test("a request moves lastActivity; a streamed command counts as active until it ends", async () => {
  const before = await activity();
  await new Promise((r) => setTimeout(r, 20));
  const running = collect(t.process.start({ process: { cmd: "/bin/sh", args: ["-c", "sleep 0.5; echo done"] } }));
  await new Promise((r) => setTimeout(r, 150));
  const during = await activity();
  assert.ok(during.lastActivity > before.lastActivity);
  assert.ok(during.activeRequests >= 1, JSON.stringify(during));
  assert.equal((await running).stdout, "done\n");
  // The stream's close is noticed a tick after the client sees the end.
  for (let i = 0; i < 50 && (await activity()).activeRequests > 0; i++) await new Promise((r) => setTimeout(r, 20));
  const afterwards = await activity();
  assert.equal(afterwards.activeRequests, 0);
  assert.ok(afterwards.lastActivity >= during.lastActivity);
});

test("health checks and requests without the token are not activity", async () => {
  const first = await activity();
  await new Promise((r) => setTimeout(r, 30));
  // What a sandbox pinging itself, or a client without the token, sends.
  assert.equal((await fetch(`${t.url}/health`)).status, 204);
  assert.equal((await fetch(`${t.url}/envs`)).status, 401);
  assert.equal(
    (await fetch(`${t.url}/files?path=/etc/hostname`, { headers: { "x-access-token": "wrong" } })).status,
    401,
  );
  const rpc = await fetch(`${t.url}/process.Process/List`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(rpc.status, 401);
  const second = await activity();
  assert.equal(second.lastActivity, first.lastActivity);
  assert.equal(second.activeRequests, 0);
});
