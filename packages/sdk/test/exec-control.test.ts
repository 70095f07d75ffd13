import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { waitGone } from "@tether/agent";
import { CommandExitError, InvalidArgumentError } from "../src/index.js";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";

let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: "sdk-exec-token" });
});
after(() => t.close());

let keys = 0;
const newKey = (what: string) => `sdk-${what}-${process.pid}-${++keys}`;

function seqOutput(n: number): string {
  let out = "";
  for (let i = 1; i <= n; i++) out += `${i}\n`;
  return out;
}

for (const transport of TRANSPORTS) {
  describe(`exec control over ${transport}`, () => {
    test("signal sends any signal by name; the result names the one that killed it", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start([
        "sh",
        "-c",
        "trap 'echo got USR1' USR1; echo ready; while :; do sleep 0.05; done",
      ]);
      for await (const chunk of handle) if (Buffer.from(chunk.data).toString().includes("ready")) break;
      await handle.signal("USR1");
      for await (const chunk of handle) if (Buffer.from(chunk.data).toString().includes("got USR1")) break;
      await handle.signal("HUP", { group: true });
      const err = await handle.wait().catch((e: unknown) => e);
      assert.ok(err instanceof CommandExitError);
      assert.equal(err.signal, "SIGHUP");
      assert.equal(err.reason, "signaled");
      assert.match(err.stdout, /got USR1/);
    });

    test("an unknown signal name is an InvalidArgumentError", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["sleep", "30"]);
      await assert.rejects(handle.signal("BOGUS"), InvalidArgumentError);
      await handle.kill();
      const result = await handle.wait().catch((e: CommandExitError) => e);
      assert.equal(result.signal, "SIGKILL");
    });

    test("kill takes the whole group: a grandchild dies too", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["sh", "-c", "sleep 300 & echo $!; wait"], { reject: false });
      let grandchild = 0;
      for await (const chunk of handle) {
        grandchild = Number(Buffer.from(chunk.data).toString().trim());
        if (grandchild) break;
      }
      await handle.kill("TERM");
      const result = await handle.wait();
      assert.equal(result.signal, "SIGTERM");
      assert.ok(await waitGone(grandchild));
    });

    test("idleTimeoutMs ends a silent command with reason idle_timeout", async () => {
      const agent = t.client(transport);
      const err = await agent.commands.run(["sh", "-c", "echo once; sleep 30"], { idleTimeoutMs: 300 }).catch((e) => e);
      assert.ok(err instanceof CommandExitError);
      assert.equal(err.reason, "idle_timeout");
      assert.equal(err.timedOut, true);
      assert.equal(err.stdout, "once\n");
      assert.match(err.message, /idle timeout/);
    });

    test("timeoutMs is kept by the agent after the client disconnects", async () => {
      const agent = t.client(transport);
      const key = newKey("detached-timeout");
      const handle = await agent.commands.start(["sleep", "30"], { key, timeoutMs: 300 });
      handle.disconnect();
      assert.ok(await waitGone(handle.pid));
      const again = await agent.commands.attach({ key }, { reject: false });
      const result = await again.wait();
      assert.equal(result.reason, "timeout");
    });

    test("attach replays from offset 0 after a disconnect, then follows live", async () => {
      const agent = t.client(transport);
      const key = newKey("replay");
      const handle = await agent.commands.start(["sh", "-c", "seq 1 100; read go; seq 101 5000"], {
        key,
        stdin: true,
      });
      for await (const chunk of handle) if (Buffer.from(chunk.data).toString().includes("100\n")) break;
      handle.disconnect();
      const again = await agent.commands.attach({ key });
      assert.equal(again.pid, handle.pid);
      assert.equal(again.existing, true);
      await again.sendStdin("\n");
      const result = await again.wait();
      assert.equal(result.stdout, seqOutput(5000));
      assert.deepEqual(again.dropped, []);
      assert.equal(again.offsets.stdout, seqOutput(5000).length);
    });

    test("attach from a handle's offsets resumes exactly where it stopped", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["sh", "-c", "seq 1 10; read go; seq 11 20"], { stdin: true });
      for await (const chunk of handle) if (Buffer.from(chunk.data).toString().endsWith("10\n")) break;
      const offsets = handle.offsets;
      assert.equal(offsets.stdout, seqOutput(10).length);
      handle.disconnect();
      const again = await agent.commands.attach(handle.pid, { from: offsets });
      await again.sendStdin("\n");
      const result = await again.wait();
      assert.equal(result.stdout, seqOutput(20).slice(offsets.stdout));
    });

    test("a small log that overflowed reports the dropped bytes and replays the rest", async () => {
      const agent = t.client(transport);
      const key = newKey("overflow");
      const handle = await agent.commands.start(["seq", "1", "20000"], { key, logLimitBytes: 2048 });
      handle.disconnect();
      assert.ok(await waitGone(handle.pid));
      const again = await agent.commands.attach({ key });
      const result = await again.wait();
      const full = seqOutput(20000);
      assert.equal(again.dropped.length, 1);
      const [dropped] = again.dropped;
      assert.equal(dropped.kind, "stdout");
      assert.equal(dropped.from, 0);
      assert.ok(dropped.to >= full.length - 2048);
      assert.equal(result.stdout, full.slice(dropped.to));
    });

    test("concurrent starts with one key run the command once", async () => {
      const agent = t.client(transport);
      const key = newKey("once");
      const marker = path.join(t.dir, `${key}.runs`);
      const results = await Promise.all(
        Array.from({ length: 6 }, () => agent.commands.run(["sh", "-c", `echo run >> ${marker}; echo done`], { key })),
      );
      for (const result of results) assert.equal(result.stdout, "done\n");
      assert.equal(readFileSync(marker, "utf8"), "run\n");
    });
  });
}
