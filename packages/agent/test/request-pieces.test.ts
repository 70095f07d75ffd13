import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { transformSplitEnvelope } from "@connectrpc/connect/protocol";
import { StatRequestSchema, StatResponseSchema } from "@tether/protocol/filesystem";
import { wholeBody, wholeMessages } from "../src/server/connect-adapter.js";
import { startTestAgent, type TestAgent } from "./support/agent.js";

function enveloped(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function pattern(length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 13 + 5) & 0xff;
  return data;
}

async function* bytewise(data: Buffer): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at++) yield data.subarray(at, at + 1);
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

test("wholeMessages hands connect-es a message sent one byte at a time in linear time", async () => {
  const big = pattern(256 << 10);
  const small = pattern(3);
  const body = Buffer.concat([enveloped(big), enveloped(small, 1)]);
  // Iterating a million pieces costs microseconds each under the test runner's async
  // hooks, whoever reads them; so the bound is relative to merely reading the pieces.
  let cpu = process.cpuUsage();
  for await (const _ of bytewise(body));
  const reading = cpuMs(cpu);
  cpu = process.cpuUsage();
  const got: { flags: number; data: Uint8Array }[] = [];
  for await (const env of transformSplitEnvelope(16 << 20)(wholeMessages(bytewise(body), 16 << 20))) got.push(env);
  const ms = cpuMs(cpu);
  assert.equal(got.length, 2);
  assert.ok(Buffer.from(got[0].data).equals(big));
  assert.deepEqual([got[1].flags, Buffer.from(got[1].data)], [1, small]);
  // connect-es alone on these pieces takes minutes (20 KB: 3 s, quadratic).
  assert.ok(ms < 4 * reading + 500, `${ms} ms of CPU, against ${reading} ms to read the pieces`);
});

test("a message longer than readMaxBytes is refused at its header, before its bytes are kept", async () => {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(64 << 20, 1);
  async function* body(): AsyncGenerator<Uint8Array> {
    yield head;
    throw new Error("the body was read past the header");
  }
  await assert.rejects(
    async () => {
      for await (const _ of wholeMessages(body(), 16 << 20));
    },
    (err: unknown) => err instanceof ConnectError && /larger than configured readMaxBytes/.test(err.message),
  );
});

test("a body cut inside a message is an error; a unary body is joined whole, within its limit", async () => {
  const cut = enveloped(pattern(100)).subarray(0, 50);
  await assert.rejects(async () => {
    for await (const _ of wholeMessages(bytewise(cut), 1 << 20));
  }, /incomplete envelope/);
  const joined: Buffer[] = [];
  for await (const piece of wholeBody(bytewise(pattern(5000)), 5000)) joined.push(piece);
  assert.equal(joined.length, 1);
  assert.ok(joined[0].equals(pattern(5000)));
  await assert.rejects(async () => {
    for await (const _ of wholeBody(bytewise(pattern(5001)), 5000));
  }, /larger than configured readMaxBytes/);
});

describe("the agent, sent a request body in tiny pieces", () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(() => t.close());

  test("a gRPC call whose message arrives one byte per HTTP/2 frame is answered, cheaply", async () => {
    // 32 KB of "/." resolves to "/": a message the agent must reassemble before it can answer.
    const path = `/${"./".repeat(16 << 10)}`;
    const body = enveloped(toBinary(StatRequestSchema, create(StatRequestSchema, { path })));
    const session = http2.connect(t.url);
    try {
      const cpu = process.cpuUsage();
      const stream = session.request({
        ":method": "POST",
        ":path": "/filesystem.Filesystem/Stat",
        "content-type": "application/grpc+proto",
        te: "trailers",
      });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("trailers", resolve));
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const ended = new Promise((resolve, reject) => {
        stream.once("end", resolve);
        stream.once("error", reject);
      });
      // One write per byte, each waited for: every byte goes out in a DATA frame of its own.
      for (let at = 0; at < body.length; at++) {
        await new Promise<void>((resolve, reject) =>
          stream.write(body.subarray(at, at + 1), (err) => (err ? reject(err) : resolve())),
        );
      }
      stream.end();
      await ended;
      assert.equal((await trailers)["grpc-status"], "0", String((await trailers)["grpc-message"]));
      const answer = Buffer.concat(chunks);
      const stat = fromBinary(StatResponseSchema, answer.subarray(5, 5 + answer.readUInt32BE(1)));
      assert.equal(stat.entry?.path, "/");
      // Both ends of 32 K frames fit in well under this; connect-es reassembling them itself
      // (quadratic in the pieces) took about ten times as long.
      const ms = cpuMs(cpu);
      assert.ok(ms < 3000, `${ms} ms of CPU`);
    } finally {
      session.close();
    }
  });
});
