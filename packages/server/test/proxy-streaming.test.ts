import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { removeHome, Sandboxes } from "@tether/host";
import { Sandbox, Tether } from "@tether/sdk";
import { eventually, request } from "./support/http.js";
import { DEBIAN, dockerSkipReason } from "./support/server.js";

/**
 * A real `tether serve` process, so its own peak RSS can be read: a body streamed
 * through the proxy must not be held in the server's memory (256 MiB each way is
 * enough to show it: held whole, either would put the server well over the limit).
 * Both ways of reaching the agent: HTTP/1.1 as E2B's SDKs speak it, HTTP/2 as ours does.
 */
const skip = await dockerSkipReason();
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "cli", "bin", "tether.js");
const SIZE = 256 * 2 ** 20;
const RSS_LIMIT = 200 * 2 ** 20;
let home: string;
let server: ChildProcess;
let url: string;
let key: string;
let sandboxID: string;

function tether(...args: string[]): string {
  return execFileSync(process.execPath, [cli, ...args], {
    env: { ...process.env, TETHER_HOME: home },
    encoding: "utf8",
  });
}

/** The server's peak resident set so far, from /proc. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1]) * 1024;
}

before(async () => {
  if (skip) return;
  home = mkdtempSync(path.join(os.tmpdir(), "tether-server-stream-"));
  key = tether("keys", "create").trim();
  tether("template", "create", "debian", "--image", DEBIAN);
  server = spawn(process.execPath, [cli, "serve", "--port", "0"], {
    env: { ...process.env, TETHER_HOME: home, TETHER_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  server.stdout?.on("data", (d: Buffer) => {
    out += d;
  });
  url = await eventually("the server's URL", async () => /listening on (http:\S+)/.exec(out)?.[1]);
});
after(async () => {
  if (skip) return;
  if (server.exitCode === null) server.kill("SIGKILL");
  const sandboxes = new Sandboxes({ home });
  for (const s of await sandboxes.list()) await sandboxes.remove(s.id).catch(() => {});
  sandboxes.close();
  await removeHome(home);
});

/** A stream of `size` bytes made as it is read. */
function generated(size: number): Readable {
  const chunk = Buffer.alloc(1 << 20, 7);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return void this.push(null);
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

test("a 256 MiB upload and download stream through the proxy; the server's RSS stays under 200 MB", {
  skip,
}, async (t) => {
  const created = await request(url, {
    method: "POST",
    path: "/v2/sandboxes",
    headers: { "x-api-key": key, "content-type": "application/json" },
    body: JSON.stringify({ templateID: "debian" }),
  });
  assert.equal(created.status, 201, created.body);
  const answer = JSON.parse(created.body);
  sandboxID = answer.sandboxID;
  const envdAccessToken = answer.envdAccessToken;
  const target = new URL(url);
  const headers = { "e2b-sandbox-id": sandboxID, "e2b-sandbox-port": "49983", "x-access-token": envdAccessToken };

  const body = generated(SIZE);
  const uploaded = await new Promise<number>((resolve, reject) => {
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: "POST",
        path: "/files?path=/tmp/big.bin",
        headers: { ...headers, "content-type": "application/octet-stream" },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    pipeline(body, req).catch(reject);
  });
  assert.equal(uploaded, 200);

  let received = 0;
  await new Promise<void>((resolve, reject) => {
    http
      .get({ host: target.hostname, port: target.port, path: "/files?path=/tmp/big.bin", headers }, (res) => {
        assert.equal(res.statusCode, 200);
        res.on("data", (d: Buffer) => {
          received += d.length;
        });
        res.on("end", resolve);
        res.on("error", reject);
      })
      .on("error", reject);
  });
  assert.equal(received, SIZE);
  const peak = peakRss(server.pid as number);
  t.diagnostic(`the server's peak RSS: ${Math.round(peak / 2 ** 20)} MiB`);
  assert.ok(peak < RSS_LIMIT, `the server's peak RSS was ${Math.round(peak / 2 ** 20)} MiB`);
});

test("our SDK's 256 MiB upload and download over HTTP/2, at the same time, stream through the proxy; the RSS stays under 200 MB", {
  skip,
}, async (t) => {
  const sandbox = await Sandbox.connect(sandboxID, { tether: new Tether({ apiUrl: url, apiKey: key }) });
  try {
    // /tmp/big.bin is the first test's: one file goes down while the other goes up.
    let received = 0;
    const download = sandbox.files.read("/tmp/big.bin", { format: "stream" }).then(async (stream) => {
      for await (const piece of stream) received += (piece as Buffer).length;
    });
    const upload = sandbox.files.write("/tmp/big2.bin", generated(SIZE));
    await Promise.all([download, upload]);
    assert.equal(received, SIZE);
    assert.equal((await sandbox.files.stat("/tmp/big2.bin")).size, SIZE);
  } finally {
    sandbox.close();
  }
  const peak = peakRss(server.pid as number);
  t.diagnostic(`the server's peak RSS: ${Math.round(peak / 2 ** 20)} MiB`);
  assert.ok(peak < RSS_LIMIT, `the server's peak RSS was ${Math.round(peak / 2 ** 20)} MiB`);
});

test("SIGTERM stops tether serve cleanly; its sandboxes keep running", { skip }, async () => {
  const exited = new Promise<number | null>((resolve) => server.once("exit", (code) => resolve(code)));
  server.kill("SIGTERM");
  assert.equal(await exited, 0);
  const sandboxes = new Sandboxes({ home });
  try {
    const left = await sandboxes.list();
    assert.equal(left.length, 1);
    assert.equal(left[0].state, "running");
  } finally {
    sandboxes.close();
  }
});
