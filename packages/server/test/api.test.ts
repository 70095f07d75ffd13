import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ApiKeys, openServerDatabase } from "../src/index.js";
import { type Answer, request } from "./support/http.js";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

const skip = await dockerSkipReason();
const t = new TestServer();
let alpha: string;
let beta: string;
let revoked: string;
/** Team alpha's sandbox, which team beta must not see or touch. */
let sandboxId: string;
let accessToken: string;

function api(method: string, path: string, key: string | undefined, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (key !== undefined) headers["x-api-key"] = key;
  if (body !== undefined) headers["content-type"] = "application/json";
  return request(t.url, { method, path, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

before(async () => {
  if (skip) return;
  await t.start();
  t.server.templates.put("debian", DEBIAN);
  alpha = t.server.keys.create({ team: "alpha", name: "alpha" }).key;
  beta = t.server.keys.create({ team: "beta", name: "beta" }).key;
  const gone = t.server.keys.create({ team: "alpha", name: "revoked" });
  revoked = gone.key;
  assert.equal(t.server.keys.remove("revoked"), true);
  const created = await api("POST", "/v2/sandboxes", alpha, { templateID: "debian", metadata: { owner: "alpha" } });
  assert.equal(created.status, 201, created.body);
  const body = JSON.parse(created.body);
  sandboxId = body.sandboxID;
  accessToken = body.envdAccessToken;
});
after(async () => {
  if (!skip) await t.close();
});

/** Every endpoint that names a sandbox, as E2B clients call it. */
function sandboxCalls(id: string): [string, string, unknown][] {
  return [
    ["GET", `/sandboxes/${id}`, undefined],
    ["GET", `/sandboxes/${id}/metrics`, undefined],
    ["GET", `/sandboxes/${id}/logs`, undefined],
    ["GET", `/v2/sandboxes/${id}/logs`, undefined],
    ["POST", `/sandboxes/${id}/snapshots`, {}],
    ["POST", `/sandboxes/${id}/fork`, { count: 1 }],
    ["DELETE", `/sandboxes/${id}`, undefined],
    ["POST", `/sandboxes/${id}/timeout`, { timeout: 30 }],
    ["POST", `/sandboxes/${id}/refreshes`, { duration: 30 }],
    ["POST", `/sandboxes/${id}/pause`, {}],
    ["POST", `/sandboxes/${id}/resume`, {}],
    ["POST", `/sandboxes/${id}/connect`, { timeout: 30 }],
    ["POST", `/v2/sandboxes/${id}/connect`, {}],
  ];
}

test("the Sandbox schema has what the SDKs require, and envdVersion is a semver >= 0.6.4", { skip }, async () => {
  const info = JSON.parse((await api("GET", `/sandboxes/${sandboxId}`, alpha)).body);
  for (const field of ["sandboxID", "templateID", "clientID", "cpuCount", "memoryMB", "diskSizeMB", "startedAt"]) {
    assert.ok(info[field] !== undefined && info[field] !== null, `${field} in ${JSON.stringify(info)}`);
  }
  assert.equal(info.state, "running");
  assert.equal(info.envdAccessToken, accessToken);
  assert.match(info.endAt, /^\d{4}-\d\d-\d\dT/);
  const [major, minor, patch] = info.envdVersion.split(".").map(Number);
  assert.ok(major > 0 || minor > 6 || (minor === 6 && patch >= 4), info.envdVersion);
});

test("no key, a wrong key and a revoked key get 401 on every endpoint, and nothing is done", { skip }, async () => {
  const calls: [string, string, unknown][] = [
    ["POST", "/v2/sandboxes", { templateID: "debian" }],
    ["POST", "/sandboxes", { templateID: "debian" }],
    ["GET", "/v2/sandboxes", undefined],
    ["GET", "/sandboxes", undefined],
    ["GET", "/metrics", undefined],
    ["GET", "/openapi.json", undefined],
    ...sandboxCalls(sandboxId),
  ];
  const wrong = `e2b_${"0".repeat(40)}`;
  for (const key of [undefined, wrong, revoked]) {
    for (const [method, path, body] of calls) {
      const answer = await api(method, path, key, body);
      assert.equal(answer.status, 401, `${method} ${path} with key ${key}: ${answer.body}`);
      assert.equal(JSON.parse(answer.body).code, 401);
    }
  }
  const list = JSON.parse((await api("GET", "/v2/sandboxes", alpha)).body);
  assert.deepEqual(
    list.map((s: { sandboxID: string }) => s.sandboxID),
    [sandboxId],
  );
  assert.equal(JSON.parse((await api("GET", `/sandboxes/${sandboxId}`, alpha)).body).state, "running");
  assert.equal((await request(t.url, { path: "/health" })).status, 200);
});

test("a key revoked from another process (as `tether keys rm` does) is refused at its next request", {
  skip,
}, async () => {
  const key = t.server.keys.create({ team: "alpha", name: "short-lived" }).key;
  assert.equal((await api("GET", "/v2/sandboxes", key)).status, 200);
  // The CLI's own connection to the registry's database, not the server's.
  const db = openServerDatabase(t.home);
  try {
    assert.equal(new ApiKeys(db).remove("short-lived"), true);
  } finally {
    db.close();
  }
  const refused = await api("GET", "/v2/sandboxes", key);
  assert.equal(refused.status, 401, refused.body);
  assert.equal(JSON.parse(refused.body).code, 401);
});

test("team beta cannot see, touch or reach team alpha's sandbox", { skip }, async () => {
  for (const [method, path, body] of sandboxCalls(sandboxId)) {
    const answer = await api(method, path, beta, body);
    assert.equal(answer.status, 404, `${method} ${path}: ${answer.body}`);
    assert.equal(JSON.parse(answer.body).code, 404);
  }
  assert.deepEqual(JSON.parse((await api("GET", "/v2/sandboxes", beta)).body), []);
  assert.deepEqual(JSON.parse((await api("GET", "/sandboxes", beta)).body), []);
  // Through the proxy, the agent wants the sandbox's token, which only alpha was given.
  const proxied = await request(t.url, {
    method: "POST",
    path: "/process.Process/List",
    headers: { "e2b-sandbox-id": sandboxId, "e2b-sandbox-port": "49983", "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(proxied.status, 401);
  const info = JSON.parse((await api("GET", `/sandboxes/${sandboxId}`, alpha)).body);
  assert.equal(info.state, "running");
});

test("a sandbox removed behind the server's back right after its create (the proxy holds the create's answer) is a 502 through the proxy", {
  skip,
}, async () => {
  const made = await api("POST", "/v2/sandboxes", alpha, { templateID: "debian" });
  assert.equal(made.status, 201, made.body);
  const { sandboxID: id, envdAccessToken: token } = JSON.parse(made.body);
  const call = () =>
    request(t.url, {
      method: "POST",
      path: "/process.Process/List",
      headers: {
        "e2b-sandbox-id": id,
        "e2b-sandbox-port": "49983",
        "x-access-token": token,
        "content-type": "application/json",
      },
      body: "{}",
    });
  assert.equal((await call()).status, 200);
  // As `tether rm` does from another process: the server is not told.
  await t.sandboxes.remove(id);
  const gone = await call();
  assert.equal(gone.status, 502, gone.body);
  assert.equal(JSON.parse(gone.body).sandboxId, id);
  assert.equal(JSON.parse(gone.body).code, 502);
});

test("status codes as E2B's: connect 200 running / 201 resumed, pause 204 then 409, timeout 204, kill 204 then 404", {
  skip,
}, async () => {
  const made = JSON.parse((await api("POST", "/sandboxes", alpha, { templateID: "debian", timeout: 60 })).body);
  const id = made.sandboxID;
  assert.equal((await api("POST", `/v2/sandboxes/${id}/connect`, alpha, {})).status, 200);
  assert.equal((await api("POST", `/sandboxes/${id}/resume`, alpha, {})).status, 409);
  assert.equal((await api("POST", `/sandboxes/${id}/pause`, alpha, {})).status, 204);
  assert.equal((await api("POST", `/sandboxes/${id}/pause`, alpha, {})).status, 409);
  const listed = JSON.parse((await api("GET", "/v2/sandboxes?state=paused", alpha)).body);
  assert.deepEqual(
    listed.map((s: { sandboxID: string }) => s.sandboxID),
    [id],
  );
  // No body at all, as some clients send connect.
  assert.equal((await api("POST", `/sandboxes/${id}/connect`, alpha)).status, 201);
  assert.equal((await api("POST", `/sandboxes/${id}/timeout`, alpha, { timeout: 120 })).status, 204);
  assert.equal((await api("POST", `/sandboxes/${id}/refreshes`, alpha, { duration: 10 })).status, 204);
  assert.equal((await api("DELETE", `/sandboxes/${id}`, alpha)).status, 204);
  const again = await api("DELETE", `/sandboxes/${id}`, alpha);
  assert.equal(again.status, 404);
  assert.equal(JSON.parse(again.body).code, 404);
});

test("bad input is a 400 with E2B's error body; an unknown template a 404; a missing feature a 501", {
  skip,
}, async () => {
  const bad = await api("POST", "/v2/sandboxes", alpha, { templateID: "debian", timeout: "soon" });
  assert.equal(bad.status, 400);
  assert.equal(JSON.parse(bad.body).code, 400);
  const unknown = await api("POST", "/v2/sandboxes", alpha, { templateID: "no-such-template-or-image" });
  assert.equal(unknown.status, 404, unknown.body);
  const missing = await api("PUT", `/sandboxes/${sandboxId}/network`, alpha, { allowOut: [] });
  assert.equal(missing.status, 501);
  assert.equal(JSON.parse(missing.body).code, 501);
});

test("the metadata filter is decoded twice, as the SDK encodes it", { skip }, async () => {
  const inner = new URLSearchParams({ [encodeURIComponent("owner")]: encodeURIComponent("alpha") }).toString();
  const hit = JSON.parse((await api("GET", `/v2/sandboxes?metadata=${encodeURIComponent(inner)}`, alpha)).body);
  assert.deepEqual(
    hit.map((s: { sandboxID: string }) => s.sandboxID),
    [sandboxId],
  );
  const other = new URLSearchParams({ owner: "beta" }).toString();
  assert.deepEqual(
    JSON.parse((await api("GET", `/v2/sandboxes?metadata=${encodeURIComponent(other)}`, alpha)).body),
    [],
  );
});

test("the OpenAPI document and Prometheus metrics are served", { skip }, async () => {
  const doc = JSON.parse((await api("GET", "/openapi.json", alpha)).body);
  assert.ok(doc.openapi.startsWith("3."));
  assert.ok(doc.paths["/v2/sandboxes"]);
  const metrics = (await api("GET", "/metrics", alpha)).body;
  assert.match(metrics, /tether_http_requests_total\{method="POST",route="\/v2\/sandboxes",status="201"\} \d+/);
  assert.match(metrics, /tether_sandboxes\{state="running"\} [1-9]/);
  assert.match(metrics, /tether_sandbox_creates_in_flight 0/);
  assert.match(metrics, /tether_http_request_duration_seconds_bucket/);
});

test("logs, v1 and v2: the command's lines with their times, paged by start/cursor and limit, filtered by level and search", {
  skip,
}, async () => {
  // Lines 50 ms apart, so each has its own millisecond to page from; then a stderr line and a pino-shaped one.
  const script =
    'for i in 1 2 3 4 5; do echo line-$i; sleep 0.05; done; echo oops >&2; echo \'{"level":50,"msg":"structured","k":1}\'; exec sleep 600';
  t.server.templates.put("printer", DEBIAN, { command: ["sh", "-c", script] });
  const made = await api("POST", "/v2/sandboxes", alpha, { templateID: "printer", timeout: 120 });
  assert.equal(made.status, 201, made.body);
  const id = JSON.parse(made.body).sandboxID;
  type Entry = { timestamp: string; level: string; message: string; fields: Record<string, string> };
  const v1 = async (query = "") => {
    const answer = await api("GET", `/sandboxes/${id}/logs${query}`, alpha);
    assert.equal(answer.status, 200, answer.body);
    return JSON.parse(answer.body) as { logs: { timestamp: string; line: string }[]; logEntries: Entry[] };
  };
  const v2 = async (query: string) => {
    const answer = await api("GET", `/v2/sandboxes/${id}/logs${query}`, alpha);
    assert.equal(answer.status, 200, answer.body);
    return (JSON.parse(answer.body) as { logs: Entry[] }).logs;
  };
  let all = await v1();
  for (let i = 0; i < 100 && !all.logEntries.some((e) => e.message === "structured"); i++) {
    await new Promise((r) => setTimeout(r, 100));
    all = await v1();
  }
  assert.equal(all.logs.length, all.logEntries.length);
  const times = all.logEntries.map((e) => Date.parse(e.timestamp));
  assert.deepEqual(
    times,
    [...times].sort((a, b) => a - b),
    "oldest first",
  );
  const lines = all.logEntries.filter((e) => e.message.startsWith("line-"));
  assert.deepEqual(
    lines.map((e) => [e.message, e.level, e.fields.stream]),
    [1, 2, 3, 4, 5].map((i) => [`line-${i}`, "info", "stdout"]),
  );
  const raw = all.logs[all.logEntries.indexOf(lines[0] as Entry)];
  assert.deepEqual(raw, { timestamp: lines[0]?.timestamp, line: "line-1" });
  assert.ok(all.logEntries.some((e) => e.message === "oops" && e.fields.stream === "stderr"));
  const structured = all.logEntries.find((e) => e.message === "structured");
  assert.equal(structured?.level, "error");
  assert.equal(structured?.fields.k, "1");
  assert.ok(
    all.logEntries.some((e) => e.fields.name === "tetherd"),
    "the agent's own log is there too, as structured entries",
  );

  // v1 paging: from line-3's millisecond, two lines.
  const third = Date.parse(lines[2]?.timestamp as string);
  const page = await v1(`?start=${third}&limit=2`);
  assert.equal(page.logEntries.length, 2);
  assert.equal(page.logEntries[0]?.message, "line-3");
  assert.ok(page.logEntries.every((e) => Date.parse(e.timestamp) >= third));
  assert.deepEqual((await v1(`?start=${Date.now() + 60_000}`)).logEntries, []);

  // v2: forward from a cursor, backward (newest first), the least level, a search.
  assert.deepEqual(
    (await v2(`?cursor=${third}&search=line-`)).map((e) => e.message),
    ["line-3", "line-4", "line-5"],
  );
  assert.deepEqual(
    (await v2("?direction=backward&limit=2&search=line-")).map((e) => e.message),
    ["line-5", "line-4"],
  );
  assert.deepEqual(
    (await v2(`?direction=backward&cursor=${third}&search=line-`)).map((e) => e.message),
    ["line-3", "line-2", "line-1"],
  );
  assert.ok((await v2("?level=error")).some((e) => e.message === "structured"));
  assert.ok((await v2("?level=error")).every((e) => e.level === "error"));
  assert.equal((await api("GET", `/v2/sandboxes/${id}/logs?limit=-1`, alpha)).status, 400);
  assert.equal((await api("GET", `/v2/sandboxes/${id}/logs?level=loud`, alpha)).status, 400);

  // Another team's key: 404, as for every call on the sandbox.
  assert.equal((await api("GET", `/sandboxes/${id}/logs`, beta)).status, 404);
  assert.equal((await api("GET", `/v2/sandboxes/${id}/logs`, beta)).status, 404);
  // A paused sandbox's log is still there.
  assert.equal((await api("POST", `/sandboxes/${id}/pause`, alpha, {})).status, 204);
  assert.ok((await v2("?search=line-5")).length === 1);
  assert.equal((await api("DELETE", `/sandboxes/${id}`, alpha)).status, 204);
});

test("cpuCount and memoryMB at create (our extension) set the sandbox's limits; more CPUs than the host's are a 400", {
  skip,
}, async () => {
  const made = await api("POST", "/v2/sandboxes", alpha, {
    templateID: "debian",
    timeout: 60,
    cpuCount: 1,
    memoryMB: 256,
  });
  assert.equal(made.status, 201, made.body);
  const id = JSON.parse(made.body).sandboxID;
  const info = JSON.parse((await api("GET", `/sandboxes/${id}`, alpha)).body);
  assert.equal(info.cpuCount, 1);
  assert.equal(info.memoryMB, 256);
  // The engine's own cgroup limit, as metrics read it.
  const [metric] = JSON.parse((await api("GET", `/sandboxes/${id}/metrics`, alpha)).body);
  assert.equal(metric.memTotal, 256 * 2 ** 20);
  assert.equal(metric.cpuCount, 1);
  assert.equal((await api("DELETE", `/sandboxes/${id}`, alpha)).status, 204);
  const tooMany = await api("POST", "/v2/sandboxes", alpha, { templateID: "debian", cpuCount: 4096 });
  assert.equal(tooMany.status, 400, tooMany.body);
  assert.match(JSON.parse(tooMany.body).message, /cpuCount 4096/);
  assert.equal((await api("POST", "/v2/sandboxes", alpha, { templateID: "debian", memoryMB: 1 })).status, 400);
});
