import assert from "node:assert/strict";
import http from "node:http";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { request } from "./support/http.js";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

const skip = await dockerSkipReason();
const t = new TestServer();
let alpha: string;
let beta: string;

before(async () => {
  if (skip) return;
  await t.start();
  alpha = t.server.keys.create({ team: "alpha" }).key;
  beta = t.server.keys.create({ team: "beta" }).key;
});
after(async () => {
  if (!skip) await t.close();
});

function api(method: string, path: string, key: string, body?: unknown) {
  const headers: Record<string, string> = { "x-api-key": key };
  if (body !== undefined) headers["content-type"] = "application/json";
  return request(t.url, { method, path, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

/** The team's server-sent events, parsed, as they come. */
function events(key: string): {
  next: (match: (e: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
  close: () => void;
} {
  const seen: Record<string, unknown>[] = [];
  const waiters: { match: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] =
    [];
  let buffer = "";
  const req = http.get(`${t.url}/dashboard/api/events`, { headers: { "x-api-key": key } }, (res) => {
    assert.equal(res.headers["content-type"], "text/event-stream");
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      buffer += chunk;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const data = buffer
          .slice(0, end)
          .split("\n")
          .find((l) => l.startsWith("data: "));
        buffer = buffer.slice(end + 2);
        if (!data) continue;
        const event = JSON.parse(data.slice(6)) as Record<string, unknown>;
        seen.push(event);
        for (const w of [...waiters]) {
          if (w.match(event)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(event);
          }
        }
      }
    });
  });
  req.on("error", () => {});
  return {
    next: (match) =>
      new Promise((resolve) => {
        const found = seen.find(match);
        if (found) {
          seen.splice(seen.indexOf(found), 1);
          resolve(found);
        } else waiters.push({ match, resolve });
      }),
    close: () => req.destroy(),
  };
}

/** A terminal over the dashboard's WebSocket: resolves with the socket, its first message and the output so far. */
function terminal(hello: Record<string, unknown>) {
  const ws = new WebSocket(`${t.url.replace(/^http/, "ws")}/dashboard/terminal`);
  let output = "";
  const ready = new Promise<{ pid: number; reattached: boolean }>((resolve, reject) => {
    ws.on("open", () => ws.send(JSON.stringify(hello)));
    ws.on("message", (data, binary) => {
      if (binary) output += data.toString();
      else resolve(JSON.parse(data.toString()));
    });
    ws.on("close", (code, reason) => reject(new Error(`closed ${code} ${reason.toString()}`)));
  });
  const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
  return {
    ws,
    ready,
    closed,
    output: () => output,
    until: async (pattern: RegExp) => {
      for (let i = 0; !pattern.test(output); i++) {
        if (i > 600) throw new Error(`no ${pattern} in the terminal's output: ${JSON.stringify(output)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

test("the page and its assets need no key; the dashboard's API does", { skip }, async () => {
  const page = await request(t.url, { path: "/" });
  assert.equal(page.status, 200);
  assert.match(page.headers["content-type"] ?? "", /text\/html/);
  const script = /src="(\/assets\/[^"]+\.js)"/.exec(page.body)?.[1];
  assert.ok(script, page.body);
  const asset = await request(t.url, { path: script });
  assert.equal(asset.status, 200);
  assert.match(asset.headers["content-type"] ?? "", /javascript/);
  assert.equal((await request(t.url, { path: "/assets/../../package.json" })).status, 404);
  assert.equal((await request(t.url, { path: "/dashboard/api/whoami" })).status, 401);
  assert.equal((await request(t.url, { path: "/dashboard/api/events" })).status, 401);
  assert.deepEqual(JSON.parse((await api("GET", "/dashboard/api/whoami", beta)).body), { team: "beta" });
});

test("the event stream tells a team of its own sandboxes' changes, and nothing of another team's", {
  skip,
}, async () => {
  const mine = events(alpha);
  const theirs = events(beta);
  try {
    await mine.next((e) => e.type === "snapshot");
    const snapshot = await theirs.next((e) => e.type === "snapshot");
    assert.deepEqual(snapshot.sandboxes, []);
    const created = await api("POST", "/v2/sandboxes", alpha, { templateID: DEBIAN, metadata: { k: "v" } });
    assert.equal(created.status, 201, created.body);
    const id = JSON.parse(created.body).sandboxID as string;
    type View = { sandboxID: string; state: string; backend: string; metadata: Record<string, string> };
    const running = (await mine.next(
      (e) => e.type === "changed" && (e.sandbox as View).sandboxID === id && (e.sandbox as View).state === "running",
    )) as { sandbox: View };
    assert.equal(running.sandbox.backend, "docker");
    assert.deepEqual(running.sandbox.metadata, { k: "v" });
    // Its CPU and memory now, sampled by the server while the stream is open (no polling per row).
    type Usage = { sandboxID: string; cpuUsedPct: number; memUsed: number; memTotal: number };
    const sampled = await mine.next((e) => e.type === "usage" && (e.usage as Usage[]).some((u) => u.sandboxID === id));
    const usage = (sampled.usage as Usage[]).find((u) => u.sandboxID === id) as Usage;
    assert.ok(usage.cpuUsedPct >= 0 && usage.cpuUsedPct <= 100, JSON.stringify(usage));
    assert.ok(usage.memUsed > 0 && usage.memTotal >= usage.memUsed, JSON.stringify(usage));
    assert.equal((await api("POST", `/sandboxes/${id}/pause`, alpha, {})).status, 204);
    await mine.next((e) => e.type === "changed" && (e.sandbox as View).state === "paused");
    assert.equal((await api("DELETE", `/sandboxes/${id}`, alpha)).status, 204);
    await mine.next((e) => e.type === "removed" && e.sandboxID === id);
    // Beta's stream said nothing of it (no change, no usage): a marker sandbox of beta's own comes first.
    const marker = JSON.parse((await api("POST", "/v2/sandboxes", beta, { templateID: DEBIAN })).body).sandboxID;
    const first = await theirs.next((e) => e.type !== "snapshot");
    assert.equal((first.sandbox as View | undefined)?.sandboxID, marker);
    await api("DELETE", `/sandboxes/${marker}`, beta);
  } finally {
    mine.close();
    theirs.close();
  }
});

test("a sandbox's log followed as server-sent events: its last lines, then new ones; another team gets 404", {
  skip,
}, async () => {
  t.server.templates.put("ticker", DEBIAN, {
    command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.3; done"],
  });
  const made = await api("POST", "/v2/sandboxes", alpha, { templateID: "ticker" });
  assert.equal(made.status, 201, made.body);
  const id = JSON.parse(made.body).sandboxID as string;
  try {
    assert.equal((await api("GET", `/dashboard/api/sandboxes/${id}/logs`, beta)).status, 404);
    const opened = Date.now();
    const lines: { timestamp: string; message: string; stream: string }[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = http.get(
        `${t.url}/dashboard/api/sandboxes/${id}/logs`,
        { headers: { "x-api-key": alpha } },
        (res) => {
          assert.equal(res.headers["content-type"], "text/event-stream");
          let buffer = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffer += chunk;
            for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const data = block.split("\n").find((l) => l.startsWith("data: "));
              if (!block.startsWith("event: line") || !data) continue;
              const line = JSON.parse(data.slice(6));
              lines.push(line);
              // A tick recorded after the stream opened: it came live, not from the tail.
              if (line.message.startsWith("tick-") && Date.parse(line.timestamp) > opened + 500) {
                req.destroy();
                resolve();
              }
            }
          });
        },
      );
      req.on("error", (err) => (lines.length > 0 ? undefined : reject(err)));
    });
    const ticks = lines.filter((l) => l.message.startsWith("tick-"));
    assert.equal(ticks[0]?.stream, "stdout");
    // In order, none lost between the tail and the live lines.
    const numbers = ticks.map((l) => Number(l.message.slice(5)));
    assert.deepEqual(
      numbers,
      numbers.map((_, i) => (numbers[0] as number) + i),
    );
  } finally {
    await api("DELETE", `/sandboxes/${id}`, alpha);
  }
});

test("the terminal: a key in the first message, a shell that answers, reattached by pid; other teams refused", {
  skip,
}, async () => {
  const created = await api("POST", "/v2/sandboxes", alpha, { templateID: DEBIAN });
  const id = JSON.parse(created.body).sandboxID as string;
  try {
    const wrong = terminal({ key: `e2b_${"0".repeat(40)}`, sandboxID: id, cols: 80, rows: 24 });
    await assert.rejects(wrong.ready, /closed 4000 invalid API key/);
    const other = terminal({ key: beta, sandboxID: id, cols: 80, rows: 24 });
    await assert.rejects(other.ready, /closed 4000 sandbox .* not found/);

    const first = terminal({ key: alpha, sandboxID: id, cols: 100, rows: 30 });
    const { pid, reattached } = await first.ready;
    assert.equal(reattached, false);
    first.ws.send(JSON.stringify({ type: "input", data: "echo $((6*7)); stty size\r" }));
    await first.until(/[\r\n]42\r\n30 100\r\n/);
    first.ws.close();
    await first.closed;

    const again = terminal({ key: alpha, sandboxID: id, pid, cols: 80, rows: 24 });
    assert.deepEqual(await again.ready, { type: "ready", pid, reattached: true });
    // The output it missed comes back, and the shell is the same one.
    await again.until(/[\r\n]42\r\n/);
    again.ws.send(JSON.stringify({ type: "input", data: "echo pid-$$; stty size\r" }));
    await again.until(new RegExp(`pid-${pid}\\r\\n24 80\\r\\n`));
    // Another team cannot take it over by its pid.
    const thief = terminal({ key: beta, sandboxID: id, pid, cols: 80, rows: 24 });
    await assert.rejects(thief.ready, /closed 4000/);
    again.ws.close();
  } finally {
    await api("DELETE", `/sandboxes/${id}`, alpha);
  }
});
