import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Sandboxes } from "@tether/host";
import { pino } from "pino";
import { startServer } from "../src/index.js";

function openssl(): string | undefined {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "openssl is not installed (apt-get install openssl)";
  }
}

const skip = openssl();
if (skip) console.log(`# skipping the TLS test: ${skip}`);

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { rejectUnauthorized: false, headers }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

function h2get(
  session: http2.ClientHttp2Session,
  headers: Record<string, string>,
  path = "/health",
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path, ...headers });
    let status = 0;
    let body = "";
    stream.on("response", (h) => {
      status = Number(h[":status"]);
    });
    stream.on("data", (d: Buffer) => {
      body += d;
    });
    stream.on("end", () => resolve({ status, body }));
    stream.on("error", reject);
  });
}

test("with --tls-cert and --tls-key the API is served over HTTPS, and HTTP/2 (ALPN h2) reaches the proxy", {
  skip,
}, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-server-tls-"));
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  // No engine needed: nothing here makes a sandbox.
  const sandboxes = new Sandboxes({ home: dir, maintainOnStart: false });
  const server = await startServer({
    sandboxes,
    port: 0,
    tlsCert: cert,
    tlsKey: key,
    logger: pino({ level: "warn" }),
  });
  try {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await get(`${server.url}/health`)).status, 200);
    const apiKey = server.keys.create().key;
    assert.equal((await get(`${server.url}/v2/sandboxes`)).status, 401);
    const doc = await get(`${server.url}/openapi.json`, { "x-api-key": apiKey });
    assert.equal(doc.status, 200);
    assert.ok(JSON.parse(doc.body).paths["/v2/sandboxes"]);

    // HTTP/2 by ALPN (what @tether/sdk speaks to agents) goes to the sandbox proxy; the
    // API stays HTTP/1.1 and says so.
    const session = http2.connect(server.url, { rejectUnauthorized: false });
    try {
      const proxied = await h2get(session, { "e2b-sandbox-id": "nosuchsandbox", "e2b-sandbox-port": "49983" });
      assert.equal(proxied.status, 502);
      assert.match(proxied.body, /sandbox nosuchsandbox not found/);
      const api = await h2get(session, { "x-api-key": apiKey }, "/v2/sandboxes");
      assert.equal(api.status, 400);
      assert.match(api.body, /the API speaks HTTP\/1\.1/);
    } finally {
      session.close();
    }
  } finally {
    await server.close();
    sandboxes.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a certificate without its key is refused before anything listens", async () => {
  await assert.rejects(startServer({ port: 0, tlsCert: "/nonexistent.pem" }), /--tls-cert and --tls-key go together/);
});
