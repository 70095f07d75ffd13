import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { startTestAgent, type TestAgent } from "./support/agent.js";

const TOKEN = "audit-token-0b9d";
const lines: Record<string, unknown>[] = [];
let t: TestAgent;
before(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  t = await startTestAgent({ accessToken: TOKEN, logger: pino({ level: "info" }, sink) });
});
after(() => t.close());

const audited = () => lines.filter((line) => line.audit === "auth-failed");

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
}

test("every failed authentication leaves an audit line: what was asked, from where, why", async () => {
  lines.length = 0;
  assert.equal((await fetch(`${t.url}/envs`)).status, 401);
  const rpc = await fetch(`${t.url}/process.Process/List`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-access-token": "guess" },
    body: "{}",
  });
  assert.equal(rpc.status, 401);
  // Neither the token-free health check nor a call with the token is a failure.
  assert.equal((await fetch(`${t.url}/health`)).status, 204);
  assert.equal((await fetch(`${t.url}/envs`, { headers: { "x-access-token": TOKEN } })).status, 200);
  await until(() => audited().length >= 2);
  const [missing, wrong] = audited();
  assert.equal(audited().length, 2);
  assert.deepEqual(
    { path: missing.path, method: missing.method, reason: missing.reason, remote: missing.remote },
    { path: "/envs", method: "GET", reason: "no access token", remote: "127.0.0.1" },
  );
  assert.deepEqual(
    { path: wrong.path, reason: wrong.reason },
    { path: "/process.Process/List", reason: "wrong access token" },
  );
  assert.ok(!JSON.stringify(wrong).includes("guess"), "the audit line must not repeat the token tried");
});

test("a flood of failures is counted, not logged line by line", async () => {
  lines.length = 0;
  const attempts = 300;
  for (let sent = 0; sent < attempts; sent += 50) {
    const batch = Array.from({ length: 50 }, () => fetch(`${t.url}/envs`).then((res) => res.status));
    assert.deepEqual(new Set(await Promise.all(batch)), new Set([401]));
  }
  const total = () => audited().reduce((sum, line) => sum + (typeof line.count === "number" ? line.count : 1), 0);
  await until(() => total() >= attempts);
  assert.equal(total(), attempts);
  assert.ok(audited().length < attempts / 2, `${audited().length} audit lines for ${attempts} failures`);
});
