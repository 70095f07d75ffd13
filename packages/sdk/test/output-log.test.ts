import assert from "node:assert/strict";
import { test } from "node:test";
import { type OutputChunk, OutputLog } from "../src/commands/events.js";

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

async function* each<T>(items: T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

test("iterating a long backlog of kept output costs time linear in its chunks", async () => {
  const count = 300_000;
  const chunks: OutputChunk[] = Array.from({ length: count }, (_, i) => ({
    kind: i % 2 ? "stderr" : "stdout",
    data: new Uint8Array([i & 0xff]),
  }));
  const log = new OutputLog(true);
  for (const chunk of chunks) log.push(chunk);
  log.close();
  // Async iteration costs microseconds a step under the test runner's async hooks, whoever
  // iterates; so the bound is relative to iterating the same chunks from a plain array.
  let cpu = process.cpuUsage();
  for await (const _ of each(chunks));
  const reading = cpuMs(cpu);
  cpu = process.cpuUsage();
  let seen = 0;
  for await (const chunk of log.iterate()) {
    assert.equal(chunk, chunks[seen]);
    seen++;
  }
  const ms = cpuMs(cpu);
  assert.equal(seen, count);
  // shift() per chunk moved the whole remaining queue each time: minutes for this backlog.
  assert.ok(ms < 4 * reading + 500, `${ms} ms of CPU, against ${reading} ms to iterate an array`);
});

test("output pushed while a reader waits reaches it in order, and the log's end ends it", async () => {
  const log = new OutputLog(false);
  const got: number[] = [];
  const reading = (async () => {
    for await (const chunk of log.iterate()) got.push(chunk.data[0]);
  })();
  for (let round = 0; round < 3; round++) {
    await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 5; i++) log.push({ kind: "stdout", data: new Uint8Array([round * 5 + i]) });
  }
  await new Promise((resolve) => setImmediate(resolve));
  log.close();
  await reading;
  assert.deepEqual(
    got,
    Array.from({ length: 15 }, (_, i) => i),
  );
});
