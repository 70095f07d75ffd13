import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "support", "session-cut.js");
/** The child's resident memory past which it is killed: a regression fails, not the machine. */
const RSS_LIMIT = 1 << 30;
/** Its JavaScript heap (capped at 512 MB by --max-old-space-size) once all is done. */
const HEAP_LIMIT = 300 << 20;

interface Outcome {
  ok: boolean;
  value?: string;
  name?: string;
  message?: string;
}

interface Result {
  inFlight: Outcome;
  listed: Outcome;
  echoed: Outcome;
  followers: string[];
  followersDone: number;
  later: Outcome;
  heapUsed: number;
}

/**
 * Runs the child with a small heap; its resident memory is read every 50 ms and the child
 * is killed past RSS_LIMIT (a spin in native code, where the heap cap does not reach).
 */
function runChild(env: Record<string, string>): Promise<{ result?: Result; peakRss: number; stderr: string }> {
  const child = spawn(process.execPath, ["--max-old-space-size=512", CHILD], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  let peakRss = 0;
  const watch = setInterval(() => {
    try {
      const rss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? 0);
      peakRss = Math.max(peakRss, rss * 1024);
    } catch {
      return; // Gone already.
    }
    if (peakRss > RSS_LIMIT) child.kill("SIGKILL");
  }, 50);
  return new Promise((resolve) => {
    child.once("close", () => {
      clearInterval(watch);
      const line = stdout.trim().split("\n").at(-1);
      resolve({ result: line ? (JSON.parse(line) as Result) : undefined, peakRss, stderr });
    });
  });
}

// A client that cancels hundreds of calls in a burst meets an agent that cuts its session
// for it (GOAWAY ENHANCE_YOUR_CALM), as nghttp2's own rapid-reset defence or a stricter
// guard may. The agent used to cut it with session.destroy(), resetting every open stream
// itself, and Node's HTTP/2 then spun writing empty DATA frames without end: the process
// (agent and SDK, in one test process) grew to 23 GB and was OOM-killed.
test("a session the agent cuts under a burst of cancels: memory stays bounded, calls end clearly, the next call works", async () => {
  const { result, peakRss, stderr } = await runChild({ FOLLOWERS: "500", CUT_AFTER: "50" });
  const mb = (n: number) => `${Math.round(n / 2 ** 20)} MB`;
  assert.ok(peakRss <= RSS_LIMIT, `the process grew past ${mb(RSS_LIMIT)} and was killed`);
  assert.ok(result, `the child printed no result: ${stderr.slice(-2000)}`);
  assert.ok(result.heapUsed < HEAP_LIMIT, `heap ${mb(result.heapUsed)} at the end`);
  // The command's own stream was on the cut session: it fails as a lost connection.
  assert.equal(result.inFlight.ok, false);
  assert.equal(result.inFlight.name, "ConnectionLostError", result.inFlight.message);
  assert.match(result.inFlight.message ?? "", /ENHANCE_YOUR_CALM|connection to the agent closed/);
  // Calls sent right after the burst go through, or fail as a lost connection: never hang,
  // never fail otherwise.
  for (const call of [result.listed, result.echoed]) {
    assert.ok(call.ok || call.name === "ConnectionLostError", `${call.name}: ${call.message}`);
  }
  if (result.echoed.ok) assert.equal(result.echoed.value, "right after\n");
  // Every follower was disconnected by the client: cancelled, or lost with its session.
  assert.equal(result.followersDone, 0);
  for (const failure of result.followers) {
    assert.match(failure, /cancelled|^ConnectionLostError/);
  }
  assert.deepEqual(result.later, { ok: true, value: "later\n" });
});
