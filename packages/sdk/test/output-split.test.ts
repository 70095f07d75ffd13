import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { ExecEventSchema, ExitReason, OutputStream } from "@tether/protocol/exec";
import { splitExecOutput } from "../src/commands/exec-events.js";
import { EnvelopeReader } from "../src/server-stream.js";

function outputMessage(stream: OutputStream, offset: number, data: Buffer): Buffer {
  return Buffer.from(
    toBinary(
      ExecEventSchema,
      create(ExecEventSchema, { event: { case: "output", value: { stream, offset: BigInt(offset), data } } }),
    ),
  );
}

function cut(bytes: Buffer, points: number[]): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    parts.push(bytes.subarray(from, point));
    from = point;
  }
  return parts;
}

function pattern(length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 13 + 5) & 0xff;
  return data;
}

describe("an output message split across received buffers", () => {
  test("becomes one output event per buffer, data uncopied and offsets advancing", () => {
    for (const stream of [OutputStream.STDOUT, OutputStream.STDERR, OutputStream.PTY]) {
      for (const offset of [0, 1, 200, 2 ** 33 + 7]) {
        for (const length of [1, 130, 70_000]) {
          const data = pattern(length);
          const message = outputMessage(stream, offset, data);
          const head = message.length - length;
          for (const points of [[head], [head + 1], [message.length - 1], [head, head + 1, message.length - 1]]) {
            const parts = cut(
              message,
              points.filter((p) => p > 0 && p < message.length),
            );
            if (parts.length < 2) continue;
            const events = splitExecOutput(parts);
            assert.ok(events, `stream ${stream} offset ${offset} length ${length} cut at ${points}`);
            let at = BigInt(offset);
            for (const { event } of events) {
              assert.equal(event.case, "output");
              if (event.case !== "output") continue;
              assert.equal(event.value.stream, stream);
              assert.equal(event.value.offset, at);
              assert.ok(event.value.data.length > 0);
              at += BigInt(event.value.data.length);
            }
            const joined = Buffer.concat(
              events.map((e) => (e.event.case === "output" ? e.event.value.data : new Uint8Array())),
            );
            assert.ok(joined.equals(data));
            // The last piece is a view of the received buffer, not a copy.
            const last = events[events.length - 1].event;
            assert.equal(last.case === "output" && last.value.data.buffer, message.buffer);
          }
        }
      }
    }
  });

  test("is left to the generic decoder when its head is cut, or it is no output", () => {
    const message = outputMessage(OutputStream.STDOUT, 300, pattern(1000));
    for (let point = 1; point < 8; point++) assert.equal(splitExecOutput(cut(message, [point])), undefined);
    const exit = Buffer.from(
      toBinary(
        ExecEventSchema,
        create(ExecEventSchema, { event: { case: "exit", value: { reason: ExitReason.EXITED, status: "x" } } }),
      ),
    );
    assert.equal(splitExecOutput(cut(exit, [3])), undefined);
    // A length that does not match what arrived is not trusted.
    const truncated = message.subarray(0, message.length - 1);
    assert.equal(splitExecOutput(cut(truncated, [20])), undefined);
  });
});

test("EnvelopeReader hands out messages as views of the buffers they arrived in", () => {
  const messages = [pattern(10), pattern(0), pattern(70_000), pattern(3)];
  const stream = Buffer.concat(
    messages.map((m, i) => {
      const head = Buffer.alloc(5);
      head[0] = i === messages.length - 1 ? 2 : 0;
      head.writeUInt32BE(m.length, 1);
      return Buffer.concat([head, m]);
    }),
  );
  for (const size of [1, 4, 7, 1000, 65536, stream.length]) {
    const reader = new EnvelopeReader();
    const got: { flags: number; data: Buffer }[] = [];
    for (let at = 0; at < stream.length; at += size) {
      reader.push(stream.subarray(at, at + size));
      for (let env = reader.nextParts(); env; env = reader.nextParts()) {
        got.push({ flags: env.flags, data: Buffer.concat(env.parts) });
      }
    }
    assert.equal(got.length, messages.length, `chunks of ${size}`);
    got.forEach((m, i) => {
      assert.ok(m.data.equals(messages[i]));
      assert.equal(m.flags, i === messages.length - 1 ? 2 : 0);
    });
  }
});

test("EnvelopeReader reassembles a 1 MiB message fed one byte at a time in linear time", () => {
  const payload = pattern(1 << 20);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  const stream = Buffer.concat([head, payload, Buffer.alloc(5)]);
  const reader = new EnvelopeReader();
  const got: { flags: number; parts: Buffer[] }[] = [];
  const cpu = process.cpuUsage();
  for (let at = 0; at < stream.length; at++) {
    reader.push(stream.subarray(at, at + 1));
    for (let env = reader.nextParts(); env; env = reader.nextParts()) got.push(env);
  }
  const used = process.cpuUsage(cpu);
  assert.equal(got.length, 2);
  assert.ok(Buffer.concat(got[0].parts).equals(payload));
  assert.equal(got[1].parts.length, 0);
  // Trickled bytes are gathered into 64 KiB slabs, not kept one list entry per byte.
  assert.ok(got[0].parts.length <= 17, `${got[0].parts.length} parts`);
  // Quadratic reassembly took seconds per 70 KB here; linear takes tens of milliseconds
  // for the whole MiB. The bound is CPU time, far above that, so a loaded machine passes.
  const ms = (used.user + used.system) / 1000;
  assert.ok(ms < 1000, `${ms} ms of CPU for 1 MiB in 1-byte chunks`);
});
