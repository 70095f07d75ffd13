import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestAgent } from "./support/agent.js";

const TOKEN = "watchers-token-77c2";

function code(err: unknown): Code {
  return ConnectError.from(err).code;
}

test("a polled watcher nobody polls is removed; one polled is kept", async () => {
  // An idle limit well above the polling period below, so a loaded machine's pauses do not drop the polled one.
  const t = await startTestAgent({ accessToken: TOKEN, limits: { watcherIdleMs: 1000 } });
  try {
    const dir = path.join(t.dir, "watched");
    mkdirSync(dir);
    const { watcherId: abandoned } = await t.files.createWatcher({ path: dir });
    const { watcherId: polled } = await t.files.createWatcher({ path: dir });
    // Three idle periods, polling one watcher every 50 ms all along; events pile up meanwhile.
    // (Polling the other to see whether it is gone would keep it alive.)
    const start = Date.now();
    for (let i = 0; Date.now() - start < 3000; i++) {
      writeFileSync(path.join(dir, `f${i}`), "x");
      await t.files.getWatcherEvents({ watcherId: polled });
      await sleep(50);
    }
    await assert.rejects(t.files.getWatcherEvents({ watcherId: abandoned }), (err) => code(err) === Code.NotFound);
    const { events } = await t.files.getWatcherEvents({ watcherId: polled });
    assert.ok(Array.isArray(events));
    await t.files.removeWatcher({ watcherId: polled });
  } finally {
    await t.close();
  }
});

test("polled watchers are capped: past the cap CreateWatcher is resource_exhausted until one is removed", async () => {
  const t = await startTestAgent({ accessToken: TOKEN, limits: { maxPolledWatchers: 3 } });
  try {
    const made = await Promise.all([1, 2, 3].map(() => t.files.createWatcher({ path: t.dir })));
    await assert.rejects(t.files.createWatcher({ path: t.dir }), (err) => code(err) === Code.ResourceExhausted);
    await t.files.removeWatcher({ watcherId: made[0].watcherId });
    const { watcherId } = await t.files.createWatcher({ path: t.dir });
    assert.ok(watcherId);
  } finally {
    await t.close();
  }
});
