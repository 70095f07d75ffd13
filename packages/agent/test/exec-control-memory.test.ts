import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Exec, ExitReason, OutputStream } from "@tether/protocol/exec";
import { type AgentProcess, sampleMax, spawnAgentProcess } from "./support/agent-process.js";
import { collectExec, ExecReader } from "./support/exec-events.js";

const TOTAL = 200_000_000;
const RSS_LIMIT = 250 << 20;

function execClient(url: string): Client<typeof Exec> {
  return createClient(Exec, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
}

describe("agent memory with 200 MB of output", () => {
  let agent: AgentProcess;
  let exec: Client<typeof Exec>;
  before(async () => {
    agent = await spawnAgentProcess();
    exec = execClient(agent.url as string);
  });
  after(() => agent.stop());

  test("a slow reader holds the process back: nothing lost, agent RSS bounded", async (ctx) => {
    const rss = sampleMax(() => agent.rss());
    const reader = new ExecReader(exec.start({ process: { cmd: "head", args: ["-c", String(TOTAL), "/dev/zero"] } }));
    await reader.started();
    let bytes = 0;
    let next = 0n;
    let steps = 0;
    // Read one event at a time, pausing often: far slower than head writes.
    for (;;) {
      if (!(await reader.step())) break;
      const offsets = reader.seen.offsets.stdout;
      if (offsets.length > 0) {
        const last = offsets.pop() as { offset: bigint; length: number };
        assert.equal(last.offset, next, "offsets are continuous");
        next += BigInt(last.length);
        bytes += last.length;
        reader.seen.output.stdout.length = 0;
      }
      if (++steps % 4 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    const maxRss = rss.stop();
    ctx.diagnostic(`agent RSS peak ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
    assert.equal(bytes, TOTAL);
    assert.deepEqual(reader.seen.dropped, []);
    assert.equal(reader.seen.exit?.reason, ExitReason.EXITED);
    assert.ok(maxRss < RSS_LIMIT, `agent RSS peaked at ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
  });

  test("with nobody attached the process runs on; the log keeps the last 1 MiB and RSS stays bounded", async (ctx) => {
    const rss = sampleMax(() => agent.rss());
    const key = `absent-${process.pid}`;
    const abort = new AbortController();
    const reader = new ExecReader(
      exec.start({ process: { cmd: "head", args: ["-c", String(TOTAL), "/dev/zero"] }, key }, { signal: abort.signal }),
    );
    await reader.started();
    abort.abort();
    await reader.rest().catch(() => {});
    // Watching the end through List (no output stream attached) until the process is done.
    for (;;) {
      const { processes } = await exec.list({});
      if (processes.find((p) => p.key === key)?.running === false) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const maxRss = rss.stop();
    ctx.diagnostic(`agent RSS peak ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
    const seen = await collectExec(exec.attach({ process: { ref: { case: "key", value: key } } }));
    assert.equal(seen.exit?.reason, ExitReason.EXITED);
    assert.equal(seen.dropped.length, 1);
    const { stream, from, to } = seen.dropped[0];
    assert.equal(stream, OutputStream.STDOUT);
    assert.equal(from, 0n);
    const replayed = seen.output.stdout.reduce((n, b) => n + b.length, 0);
    assert.equal(BigInt(replayed), BigInt(TOTAL) - to);
    assert.ok(replayed <= 1 << 20 && replayed > 0, `replayed ${replayed} bytes`);
    assert.ok(maxRss < RSS_LIMIT, `agent RSS peaked at ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
  });
});

describe("out-of-memory kill", () => {
  test("a child killed by the OOM killer in the agent's memory cgroup ends with reason oom_killed", async (ctx) => {
    const cgroup = makeMemoryCgroup(256 << 20);
    if (typeof cgroup === "string") {
      ctx.skip(cgroup);
      return;
    }
    const agent = await spawnAgentProcess();
    try {
      writeFileSync(path.join(cgroup.dir, "cgroup.procs"), String(agent.pid));
      const exec = execClient(agent.url as string);
      // The hog volunteers as the OOM killer's victim, so the agent itself is spared.
      const hog = "const a = []; for (;;) a.push(Buffer.alloc(1 << 24, 1));";
      const seen = await collectExec(
        exec.start({
          process: {
            cmd: "/bin/sh",
            args: ["-c", `echo 1000 > /proc/self/oom_score_adj; exec "${process.execPath}" -e "${hog}"`],
          },
        }),
      );
      ctx.diagnostic(`exit: ${seen.exit?.message}`);
      assert.equal(seen.exit?.reason, ExitReason.OOM_KILLED, seen.exit?.message);
      assert.equal(seen.exit?.signal, "SIGKILL");
    } finally {
      await agent.stop();
      cgroup.remove();
    }
  });
});

/**
 * A cgroup v1 memory cgroup under this process's own, limited to `limit` bytes; or the
 * reason it cannot be made here (a string), for a visible skip.
 */
function makeMemoryCgroup(limit: number): { dir: string; remove(): void } | string {
  const line = readFileSync("/proc/self/cgroup", "utf8")
    .split("\n")
    .find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  if (!line) return "no cgroup v1 memory controller here (the detection function is tested on its own)";
  const dir = path.join("/sys/fs/cgroup/memory", line.slice(line.lastIndexOf(":") + 1), `tether-oom-${process.pid}`);
  try {
    mkdirSync(dir);
    writeFileSync(path.join(dir, "memory.limit_in_bytes"), String(limit));
    try {
      writeFileSync(path.join(dir, "memory.memsw.limit_in_bytes"), String(limit));
    } catch {
      // No swap accounting: the memory limit alone applies.
    }
  } catch (err) {
    return `cannot create a memory cgroup at ${dir}: ${(err as Error).message}`;
  }
  return {
    dir,
    remove() {
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(dir);
          return;
        } catch {
          // Its last task may still be exiting.
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
    },
  };
}
