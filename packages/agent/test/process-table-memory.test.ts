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

// A finished process stays in the table for a minute (its exit and output answer late
// clients); what it needs for that is its end and its log, not its child: its pipes, their
// streams and the ChildProcess, for each of the thousands of quick commands of a minute.
test("a finished process kept for late clients holds no more its child (pipes, streams, ChildProcess)", async () => {
  const table = new ProcessTable();
  const children: WeakRef<object>[] = [];
  const procs: TrackedProcess[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const proc = new TrackedProcess({
        config: create(ProcessConfigSchema, { cmd: "/bin/sh", args: ["-c", "echo kept"] }),
        file: "/bin/sh",
        args: ["-c", "echo kept"],
        env: { PATH: "/usr/bin:/bin" },
        cwd: "/",
        stdin: false,
      });
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
