import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Filesystem } from "@tether/protocol/filesystem";
import { Process } from "@tether/protocol/process";
import { startTestAgent, type TestAgent } from "./support/agent.js";

const TOKEN = "test-token-7f3a";
let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: TOKEN });
});
after(() => t.close());

/** Calls every method of a service with an empty request and returns the error code it got. */
async function callAll(service: DescService, headers: Record<string, string>): Promise<Map<string, Code | "ok">> {
  const client = createClient(service, t.transport(headers)) as unknown as Record<string, (req: unknown) => unknown>;
  const results = new Map<string, Code | "ok">();
  for (const method of service.methods) {
    try {
      if (method.methodKind === "client_streaming") {
        await client[method.localName]((async function* () {})());
      } else if (method.methodKind === "server_streaming") {
        for await (const _ of client[method.localName]({}) as AsyncIterable<unknown>) break;
      } else {
        await client[method.localName]({});
      }
      results.set(method.name, "ok");
    } catch (err) {
      results.set(method.name, ConnectError.from(err).code);
    }
  }
  return results;
}

for (const service of [Process, Filesystem]) {
  describe(`${service.typeName} without the token`, () => {
    for (const [label, headers] of [
      ["missing", {}],
      ["wrong", { "x-access-token": "not-the-token" }],
    ] as const) {
      test(`every method answers unauthenticated when the token is ${label}`, async () => {
        const results = await callAll(service, headers);
        assert.equal(results.size, service.methods.length);
        for (const [name, code] of results) assert.equal(code, Code.Unauthenticated, `${service.typeName}/${name}`);
      });
    }
    test("with the token, no method answers unauthenticated", async () => {
      const results = await callAll(service, { "x-access-token": TOKEN });
      for (const [name, code] of results) assert.notEqual(code, Code.Unauthenticated, `${service.typeName}/${name}`);
    });
  });
}

test("gRPC and gRPC-Web clients get unauthenticated too", async () => {
  for (const transport of [
    createGrpcTransport({ baseUrl: t.url }),
    createGrpcWebTransport({ baseUrl: t.url, httpVersion: "1.1" }),
  ]) {
    const client = createClient(Process, transport);
    await assert.rejects(client.list({}), (err) => ConnectError.from(err).code === Code.Unauthenticated);
  }
});

test("an unauthenticated Start runs nothing", async () => {
  const marker = path.join(t.dir, "started-without-token");
  const client = createClient(Process, t.transport({}));
  await assert.rejects(
    (async () => {
      for await (const _ of client.start({ process: { cmd: "/bin/sh", args: ["-c", `touch ${marker}`] } }));
    })(),
    (err) => ConnectError.from(err).code === Code.Unauthenticated,
  );
  // Give a process that was wrongly started time to create the marker.
  await sleep(300);
  assert.equal(existsSync(marker), false);
});

describe("HTTP endpoints", () => {
  const endpoints: [string, string][] = [
    ["GET", "/envs"],
    ["POST", "/init"],
    ["GET", "/files?path=/etc/hostname"],
    ["POST", "/files?path=/tmp/x"],
  ];
  for (const [method, url] of endpoints) {
    test(`${method} ${url} needs the token`, async () => {
      for (const headers of [{}, { "x-access-token": "wrong" }] as Record<string, string>[]) {
        const res = await fetch(`${t.url}${url}`, { method, headers, body: method === "POST" ? "{}" : undefined });
        assert.equal(res.status, 401);
        assert.deepEqual(await res.json(), { message: "missing or wrong access token (X-Access-Token)", code: 401 });
      }
    });
  }

  test("GET /health needs no token", async () => {
    const res = await fetch(`${t.url}/health`);
    assert.equal(res.status, 204);
  });

  test("an unauthenticated upload writes nothing", async () => {
    const target = path.join(t.dir, "uploaded-without-token");
    const res = await fetch(`${t.url}/files?path=${encodeURIComponent(target)}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: "data",
    });
    assert.equal(res.status, 401);
    assert.equal(existsSync(target), false);
  });

  test("an unauthenticated /init cannot replace the token", async () => {
    const res = await fetch(`${t.url}/init`, { method: "POST", body: JSON.stringify({ accessToken: "hijack" }) });
    assert.equal(res.status, 401);
    const envs = await fetch(`${t.url}/envs`, { headers: { "x-access-token": TOKEN } });
    assert.equal(envs.status, 200);
  });
});

test("the first /init sets the token on an agent started without one", async () => {
  const open = await startTestAgent();
  try {
    assert.equal((await fetch(`${open.url}/envs`)).status, 200);
    const init = await fetch(`${open.url}/init`, { method: "POST", body: JSON.stringify({ accessToken: "first" }) });
    assert.equal(init.status, 204);
    assert.equal((await fetch(`${open.url}/envs`)).status, 401);
    assert.equal((await fetch(`${open.url}/envs`, { headers: { "x-access-token": "first" } })).status, 200);
    // A later /init must present the token it replaces.
    const again = await fetch(`${open.url}/init`, { method: "POST", body: JSON.stringify({ accessToken: "second" }) });
    assert.equal(again.status, 401);
  } finally {
    await open.close();
  }
});
