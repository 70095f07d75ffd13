import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Client, createClient } from "@connectrpc/connect";
import { Exec, ExitReason } from "@tether/protocol/exec";
import { FINISHED_RETENTION_MS } from "../src/process/table.js";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { collectExec } from "./support/exec-events.js";
import { collect } from "./support/process-events.js";

let t: TestAgent;
let exec: Client<typeof Exec>;
before(async () => {
  t = await startTestAgent();
  exec = createClient(Exec, t.transport());
});
after(() => t.close());

// Its own file so the minute it waits runs beside the other tests.
test("a finished process still answers with its exit (and output) a minute later, by key, pid and envd", async () => {
  assert.ok(FINISHED_RETENTION_MS >= 60_000);
  const key = `retained-${process.pid}`;
  const first = await collectExec(
    exec.start({ process: { cmd: "/bin/sh", args: ["-c", "echo kept; exit 5"] }, key, timeoutMs: 0n }),
  );
  const pid = first.started?.pid as number;
  await new Promise((r) => setTimeout(r, 61_000));
  const byKey = await collectExec(exec.attach({ process: { ref: { case: "key", value: key } } }));
  assert.equal(byKey.exit?.reason, ExitReason.EXITED);
  assert.equal(byKey.exit?.exitCode, 5);
  assert.equal(Buffer.concat(byKey.output.stdout).toString(), "kept\n");
  const byPid = await collectExec(exec.attach({ process: { ref: { case: "pid", value: pid } } }));
  assert.equal(byPid.exit?.exitCode, 5);
  const envd = await collect(t.process.connect({ process: { selector: { case: "pid", value: pid } } }));
  assert.equal(envd.end?.status, "exit status 5");
});
