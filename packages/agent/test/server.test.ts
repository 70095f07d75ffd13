import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startTestAgent, type TestAgent } from "./support/agent.js";

let t: TestAgent;
before(async () => {
  t = await startTestAgent();
});
after(() => t.close());

test("health answers 204 over HTTP/1.1", async () => {
  const res = await fetch(`${t.url}/health`);
  assert.equal(res.status, 204);
});

test("unknown endpoints answer a JSON 404", async () => {
  const res = await fetch(`${t.url}/nope`);
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), { message: "no such endpoint", code: 404 });
});

test("POST /init sets default env vars that GET /envs returns", async () => {
  const init = await fetch(`${t.url}/init`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ envVars: { GREETING: "hi" } }),
  });
  assert.equal(init.status, 204);
  const envs = await fetch(`${t.url}/envs`);
  assert.deepEqual(await envs.json(), { GREETING: "hi" });
});

test("POST /init rejects a malformed body with 400 and changes nothing", async () => {
  const res = await fetch(`${t.url}/init`, { method: "POST", body: JSON.stringify({ envVars: { A: 1 } }) });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { message: string; code: number };
  assert.equal(body.code, 400);
  assert.match(body.message, /envVars/);
  const envs = await fetch(`${t.url}/envs`);
  assert.equal(((await envs.json()) as Record<string, string>).A, undefined);
});

test("POST /init rejects an unknown default user", async () => {
  const res = await fetch(`${t.url}/init`, { method: "POST", body: JSON.stringify({ defaultUser: "no-such-user-x" }) });
  assert.equal(res.status, 403);
  assert.match(((await res.json()) as { message: string }).message, /no-such-user-x/);
});
