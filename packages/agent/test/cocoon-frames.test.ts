import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameError, FrameReader } from "../src/cocoon/frames.js";

test("lines come out whole whatever pieces they arrive in", () => {
  const lines = ['{"type":"stdin","data":"aGk="}', "", "x".repeat(70_000), '{"type":"stdin_close"}'];
  const stream = Buffer.from(`${lines.join("\n")}\n`);
  for (const size of [1, 2, 7, 1000, stream.length]) {
    const reader = new FrameReader();
    const got: string[] = [];
    for (let at = 0; at < stream.length; at += size) got.push(...reader.push(stream.subarray(at, at + size)));
    assert.deepEqual(got, lines, `pieces of ${size}`);
    assert.equal(reader.pending, 0);
  }
});

test("a 1 MiB line sent one byte at a time is read in linear time", () => {
  const line = Buffer.alloc(1 << 20, "a");
  const stream = Buffer.concat([line, Buffer.from("\n")]);
  const reader = new FrameReader();
  const got: string[] = [];
  const cpu = process.cpuUsage();
  for (let at = 0; at < stream.length; at++) got.push(...reader.push(stream.subarray(at, at + 1)));
  const used = process.cpuUsage(cpu);
  assert.equal(got.length, 1);
  assert.equal(got[0].length, line.length);
  // Tens of milliseconds here; the bound is CPU time, far above, so a loaded machine passes.
  const ms = (used.user + used.system) / 1000;
  assert.ok(ms < 1000, `${ms} ms of CPU for 1 MiB in 1-byte pieces`);
});

test("a line longer than the limit is an error, whether it arrives at once or in pieces", () => {
  assert.throws(() => new FrameReader(10).push(Buffer.from("0123456789a\n")), FrameError);
  const reader = new FrameReader(10);
  assert.deepEqual(reader.push(Buffer.from("0123456789\n01234")), ["0123456789"]);
  assert.throws(() => reader.push(Buffer.from("567890")), /frame longer than 10 bytes/);
});
