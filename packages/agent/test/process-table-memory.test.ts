import assert from "node:assert/strict";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { create } from "@bufbuild/protobuf";
import { ProcessConfigSchema } from "@tether/protocol/process";
import { ProcessTable } from "../src/process/table.js";
import { TrackedProcess } from "../src/process/tracked.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const RUNS = 20;

function echoKept(): TrackedProcess {
  return new TrackedProcess({
    config: create(ProcessConfigSchema, { cmd: "/bin/sh", args: ["-c", "echo kept"] }),
    file: "/bin/sh",
    args: ["-c", "echo kept"],
    env: { PATH: "/usr/bin:/bin" },
    cwd: "/",
    stdin: false,
  });
}

// A finished process stays in the table for a minute (its exit and output answer late
// clients); what it needs for that is its end and its log, not its child: its pipes, their
// streams and the ChildProcess, for each of the thousands of quick commands of a minute.
test("a finished process kept for late clients holds no more its child (pipes, streams, ChildProcess)", async () => {
  const table = new ProcessTable();
  const children: WeakRef<object>[] = [];
  const procs: TrackedProcess[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const proc = echoKept();
      await proc.spawn();
      table.add(proc);
      children.push(new WeakRef(proc.process));
      procs.push(proc);
      await proc.ended();
    }
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 10));
      gc();
    }
    // Still there for late clients, with how it ended and its output.
    for (const proc of procs) {
      assert.equal(table.find({ selector: { case: "pid", value: proc.pid } }), proc);
      assert.equal(proc.end?.status.exitCode, 0);
      assert.equal(proc.log.offsets.stdout, "kept\n".length);
    }
    assert.equal(children.filter((child) => child.deref() !== undefined).length, 0);
  } finally {
    table.killAll();
  }
});

// The minute's retention is bounded in count too: a client that starts processes faster
// than they are forgotten would otherwise grow the agent with its rate.
test("beyond its cap of finished processes, the table forgets the oldest first", async () => {
  const table = new ProcessTable({ finishedMax: 5 });
  const procs: TrackedProcess[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      const proc = echoKept();
      await proc.spawn();
      table.add(proc);
      procs.push(proc);
      await proc.ended();
      // The table learns of the end a turn after the process's own waiters.
      await new Promise((r) => setImmediate(r));
    }
    const found = procs.map((proc) => {
      try {
        return table.find({ selector: { case: "pid", value: proc.pid } }) === proc;
      } catch {
        return false;
      }
    });
    assert.deepEqual(found, [false, false, false, true, true, true, true, true]);
    assert.equal(table.all().length, 5);
  } finally {
    table.killAll();
  }
});

test("each finished process is forgotten when its own retention ends, in the order they ended", async () => {
  const table = new ProcessTable({ retentionMs: 400 });
  const ended: TrackedProcess[] = [];
  const known = () =>
    ended.map((proc) => {
      try {
        return table.find({ selector: { case: "pid", value: proc.pid } }) === proc;
      } catch {
        return false;
      }
    });
  try {
    for (const pause of [0, 250]) {
      await new Promise((r) => setTimeout(r, pause));
      const proc = echoKept();
      await proc.spawn();
      table.add(proc);
      await proc.ended();
      ended.push(proc);
    }
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(known(), [true, true]);
    // The first ended ~250 ms before the second: a moment comes when only the second is kept.
    const deadline = Date.now() + 5_000;
    while (known()[0] && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(known(), [false, true]);
    while (known()[1] && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(known(), [false, false]);
  } finally {
    table.killAll();
  }
});
