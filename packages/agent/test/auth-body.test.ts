import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import { startTestAgent } from "./support/agent.js";
import { type AgentProcess, sampleMax, spawnAgentProcess } from "./support/agent-process.js";

const TOKEN = "body-token-5c1e";
const STAT = "/filesystem.Filesystem/Stat";

/**
 * A StatRequest of nothing but unknown varint fields (field 15, value 0: two bytes each),
 * just under the agent's 16 MiB message limit: cheap to send, eight million fields to parse.
 */
function unknownFields(size = (16 << 20) - 64): Buffer {
  const body = Buffer.alloc(size);
  for (let i = 0; i + 1 < size; i += 2) body[i] = (15 << 3) | 0;
  return body;
}

interface Answer {
  status: number;
  body: string;
}

/** POSTs `body` as a Connect unary call over h2c; the answer, whatever happens to the upload. */
function postH2(url: string, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", () => {});
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/proto",
      ...headers,
    });
    let status = 0;
    let text = "";
    stream.on("response", (h) => {
      status = Number(h[":status"]);
    });
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      text += chunk;
    });
    stream.on("error", () => {});
    stream.on("close", () => {
      session.close();
      if (status === 0) reject(new Error(`no answer (stream reset ${stream.rstCode})`));
      else resolve({ status, body: text });
    });
    stream.end(body);
  });
}

/** The same over HTTP/1.1. */
function postH1(url: string, path: string, body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method: "POST", headers: { "content-type": "application/proto" } });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on("error", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    // The agent may close the connection before it has the whole body: only a missing answer counts.
    req.on("error", reject);
    req.end(body);
  });
}

async function health(url: string): Promise<number> {
  return (await fetch(`${url}/health`)).status;
}

describe("an unauthenticated message body, against a real agent process", () => {
  let agent: AgentProcess;
  let url: string;
  before(async () => {
    agent = await spawnAgentProcess(["--port", "0", "--access-token", TOKEN]);
    url = agent.url as string;
  });
  after(() => agent.stop());

  for (const [protocol, post] of [
    ["HTTP/2", (u: string, p: string, b: Buffer) => postH2(u, p, b)],
    ["HTTP/1.1", postH1],
  ] as const) {
    test(`${protocol}: 16 MiB of unknown fields is refused without being read or parsed`, async (t) => {
      assert.equal(await health(url), 204);
      const before = agent.rss();
      const peak = sampleMax(() => agent.rss(), 10);
      const answer = await post(url, STAT, unknownFields());
      const healthy = await health(url);
      const grown = peak.stop() - before;
      t.diagnostic(`the agent grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
      assert.equal(answer.status, 401, answer.body);
      assert.equal(JSON.parse(answer.body).code, "unauthenticated");
      assert.equal(healthy, 204);
      // Parsed, the body took the agent from 66 to 1,516 MB; refused unread, it costs a few buffers.
      assert.ok(grown < 48 << 20, `the agent grew by ${grown >> 20} MiB`);
    });
  }
});

describe("malformed and oversized messages with the token", () => {
  const tokenHeader = { "x-access-token": TOKEN };
  test("a message that is not protobuf is invalid_argument, not internal", async () => {
    const t = await startTestAgent({ accessToken: TOKEN });
    try {
      // A length-delimited field whose length runs past the end of the message.
      const answer = await postH2(t.url, STAT, Buffer.from([0x0a, 0xff, 0x01, 0x41]), tokenHeader);
      assert.equal(answer.status, 400, answer.body);
      assert.equal(JSON.parse(answer.body).code, "invalid_argument");
    } finally {
      await t.close();
    }
  });

  test("an authorized message of unknown fields costs about its size, not thirty times it", async (t) => {
    const agent = await spawnAgentProcess(["--port", "0", "--access-token", TOKEN]);
    try {
      const url = agent.url as string;
      const before = agent.rss();
      const peak = sampleMax(() => agent.rss(), 10);
      const answer = await postH2(url, STAT, unknownFields(), tokenHeader);
      const grown = peak.stop() - before;
      t.diagnostic(`the agent grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
      // Parsed and handed to Stat, which refuses the empty path.
      assert.equal(answer.status, 400, answer.body);
      assert.match(JSON.parse(answer.body).message, /path is empty/);
      assert.ok(grown < 160 << 20, `the agent grew by ${grown >> 20} MiB`);
    } finally {
      await agent.stop();
    }
  });
});
