import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Sandbox, Tether } from "@tether/sdk";
import { BUSYBOX, dockerSkipReason, TestServer } from "./support/server.js";

// 50 sandboxes asked for at once through the API (our SDK), as a burst of users would:
// the team's in-flight limit (10) makes the rest wait in line, 429s are waited out, and
// every one runs a command and is removed. Busybox and `true`: as light as a sandbox gets.
const COUNT = Number(process.env.TETHER_TEST_BURST ?? 50);
const skip = await dockerSkipReason([BUSYBOX]);
const t = new TestServer();
let tether: Tether;

before(async () => {
  if (skip) return;
  await t.start();
  t.server.templates.put("busybox", BUSYBOX);
  tether = new Tether({ apiUrl: t.url, apiKey: t.server.keys.create({ team: "burst" }).key });
});
after(async () => {
  if (!skip) await t.close();
});

test(`${COUNT} sandboxes created at once each run a command, and are all removed`, { skip }, async () => {
  const outcomes = await Promise.allSettled(
    Array.from({ length: COUNT }, async (_, i) => {
      const sandbox = await Sandbox.create({ tether, template: "busybox", metadata: { burst: "yes" } });
      try {
        const result = await sandbox.commands.run(["sh", "-c", `true && echo ${i}`]);
        return result.stdout;
      } finally {
        await sandbox.kill();
      }
    }),
  );
  const failed = outcomes
    .filter((o) => o.status === "rejected")
    .map((o) => String((o as PromiseRejectedResult).reason));
  assert.deepEqual(failed, []);
  assert.deepEqual(
    outcomes.map((o) => (o as PromiseFulfilledResult<string>).value),
    Array.from({ length: COUNT }, (_, i) => `${i}\n`),
  );
  assert.deepEqual((await Sandbox.list({ tether, metadata: { burst: "yes" } })).sandboxes, []);
  const left = await t.sandboxes.list({ states: ["creating", "running", "paused", "stopped", "error"] });
  assert.deepEqual(
    left.map((s) => s.id),
    [],
  );
});
