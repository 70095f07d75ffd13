import assert from "node:assert/strict";
import { test } from "node:test";
import { demuxLogStream, engineTimestamp, logLines, timedFrame } from "../src/backends/docker/log-stream.js";

function frame(stream: 1 | 2, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(data.length, 4);
  return Buffer.concat([head, data]);
}

function pattern(length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 13 + 5) & 0xff;
  return data;
}

function* pieces(bytes: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

test("the engine's log frames come out whole whatever pieces they arrive in", async () => {
  const frames = [frame(1, pattern(10)), frame(2, Buffer.alloc(0)), frame(2, pattern(70_000)), frame(1, pattern(3))];
  const stream = Buffer.concat(frames);
  for (const size of [1, 3, 8, 9, 1000, stream.length]) {
    const got = [];
    for await (const chunk of demuxLogStream(pieces(stream, size))) got.push(chunk);
    assert.deepEqual(
      got.map((c) => c.stream),
      ["stdout", "stderr", "stderr", "stdout"],
      `pieces of ${size}`,
    );
    assert.ok(got[2].data.equals(pattern(70_000)));
    assert.ok(got[3].data.equals(pattern(3)));
  }
});

test("a frame fed one byte at a time is reassembled in linear time", async () => {
  const data = pattern(256 << 10);
  const stream = frame(1, data);
  // Iterating pieces costs microseconds each under the test runner's async hooks, whoever
  // reads them; so the bound is relative to merely reading the pieces.
  let cpu = process.cpuUsage();
  for await (const _ of pieces(stream, 1));
  const reading = cpuMs(cpu);
  cpu = process.cpuUsage();
  const got = [];
  for await (const chunk of demuxLogStream(pieces(stream, 1))) got.push(chunk);
  const ms = cpuMs(cpu);
  assert.equal(got.length, 1);
  assert.ok(got[0].data.equals(data));
  // Joining every new piece to what was pending copied 32 GB here.
  assert.ok(ms < 4 * reading + 500, `${ms} ms of CPU, against ${reading} ms to read the pieces`);
});

test("timed frames carry their time; the engine's own frames none", async () => {
  const at = Date.parse("2025-03-04T05:06:07.089Z");
  const stream = Buffer.concat([timedFrame(1, Buffer.from("hi\n"), at), frame(2, Buffer.from("old\n"))]);
  const got = [];
  for await (const chunk of demuxLogStream(pieces(stream, 5))) got.push(chunk);
  assert.equal(got[0].data.toString(), "hi\n");
  assert.equal(got[0].at?.toISOString(), "2025-03-04T05:06:07.089Z");
  assert.equal(got[1].data.toString(), "old\n");
  assert.equal(got[1].at, undefined);
});

test("the engine's timestamp prefix becomes the chunk's time", () => {
  const chunk = engineTimestamp({ stream: "stdout", data: Buffer.from("2025-03-04T05:06:07.089123456Z a b\n") });
  assert.equal(chunk.at?.toISOString(), "2025-03-04T05:06:07.089Z");
  assert.equal(chunk.data.toString(), "a b\n");
  const plain = engineTimestamp({ stream: "stdout", data: Buffer.from("no-time here\n") });
  assert.equal(plain.at, undefined);
  assert.equal(plain.data.toString(), "no-time here\n");
});

test("lines: split per stream, joined across chunks, each with the time its first byte came", async () => {
  const t = (ms: number) => new Date(ms);
  const lines = [];
  for await (const line of logLines([
    { stream: "stdout", data: Buffer.from("one\ntw"), at: t(1) },
    { stream: "stderr", data: Buffer.from("err\r\n"), at: t(2) },
    { stream: "stdout", data: Buffer.from("o\nthree"), at: t(3) },
  ])) {
    lines.push([line.stream, line.text, line.at?.getTime()]);
  }
  assert.deepEqual(lines, [
    ["stdout", "one", 1],
    ["stderr", "err", 2],
    ["stdout", "two", 1],
    ["stdout", "three", 3],
  ]);
});
