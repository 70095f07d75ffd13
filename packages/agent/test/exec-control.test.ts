import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { Exec, ExitReason, OutputStream, type StartRequestSchema } from "@tether/protocol/exec";
import { Signal } from "@tether/protocol/process";
import { findOomCounter, parseOomKills, readOomKills } from "../src/process/oom.js";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { collectExec, ExecReader, isGoneOrZombie, waitGone } from "./support/exec-events.js";
import { collect, ProcessEventReader } from "./support/process-events.js";

let t: TestAgent;
let exec: Client<typeof Exec>;
before(async () => {
  t = await startTestAgent();
  exec = createClient(Exec, t.transport());
});
after(() => t.close());

type StartInit = MessageInitShape<typeof StartRequestSchema>;
const sh = (script: string, extra: Omit<StartInit, "process" | "$typeName"> = {}) => ({
  process: { cmd: "/bin/sh", args: ["-c", script] },
  ...extra,
});
const pidRef = (pid: number) => ({ ref: { case: "pid" as const, value: pid } });
const keyRef = (key: string) => ({ ref: { case: "key" as const, value: key } });
let keys = 0;
const newKey = (what: string) => `${what}-${process.pid}-${++keys}`;

function isCode(code: Code, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${err}`);
    assert.equal(Code[err.code], Code[code], err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

/** What `seq 1 n` prints. */
function seqOutput(n: number): string {
  let out = "";
  for (let i = 1; i <= n; i++) out += `${i}\n`;
  return out;
}

/** Asserts each output event starts where the previous one ended, from `first`. */
function assertContinuous(offsets: { offset: bigint; length: number }[], first = 0n): bigint {
  let next = first;
  for (const { offset, length } of offsets) {
    assert.equal(offset, next, "output offsets are continuous");
    next += BigInt(length);
  }
  return next;
}

describe("signals by name", () => {
  test("any signal by name reaches the process; a trap sees USR1, USR2 and HUP", async () => {
    const reader = new ExecReader(
      exec.start(
        sh('for s in USR1 USR2 HUP WINCH; do trap "echo got $s" $s; done; echo ready; while :; do sleep 0.05; done'),
      ),
    );
    const { pid } = await reader.started();
    await reader.until("stdout", /ready/);
    for (const [signal, seen] of [
      ["USR1", /got USR1/],
      ["sigusr2", /got USR2/],
      ["SIGHUP", /got HUP/],
      ["WINCH", /got WINCH/],
    ] as const) {
      await exec.signal({ process: pidRef(pid), signal });
      await reader.until("stdout", seen);
    }
    await exec.signal({ process: pidRef(pid), signal: "KILL", group: true });
    const seen = await reader.rest();
    assert.equal(seen.exit?.reason, ExitReason.SIGNALED);
    assert.equal(seen.exit?.signal, "SIGKILL");
  });

  test("the exit names the signal that killed the process", async () => {
    for (const signal of ["INT", "QUIT", "TERM", "USR1", "HUP"]) {
      const reader = new ExecReader(exec.start({ process: { cmd: "sleep", args: ["30"] } }));
      const { pid } = await reader.started();
      await exec.signal({ process: pidRef(pid), signal });
      const seen = await reader.rest();
      assert.equal(seen.exit?.reason, ExitReason.SIGNALED, signal);
      assert.equal(seen.exit?.signal, `SIG${signal}`);
      assert.equal(seen.exit?.exitCode, -1);
    }
  });

  test("STOP and CONT pause and resume a process", async () => {
    const reader = new ExecReader(exec.start(sh("read line; echo after $line", { stdin: true })));
    const { pid } = await reader.started();
    await exec.signal({ process: pidRef(pid), signal: "STOP" });
    await waitState(pid, "T");
    await exec.signal({ process: pidRef(pid), signal: "CONT" });
    await waitState(pid, "S");
    await t.process.sendInput({
      process: { selector: { case: "pid", value: pid } },
      input: { input: { case: "stdin", value: Buffer.from("go\n") } },
    });
    const seen = await reader.rest();
    assert.equal(Buffer.concat(seen.output.stdout).toString(), "after go\n");
    assert.equal(seen.exit?.reason, ExitReason.EXITED);
  });

  test("an unknown signal name is invalid_argument and the process is untouched", async () => {
    const reader = new ExecReader(exec.start({ process: { cmd: "sleep", args: ["30"] } }));
    const { pid } = await reader.started();
    for (const bad of ["NOPE", "", "SIG", "9", "KILL; rm -rf /"]) {
      await assert.rejects(exec.signal({ process: pidRef(pid), signal: bad }), isCode(Code.InvalidArgument));
    }
    assert.ok(!isGoneOrZombie(pid), "still running");
    await exec.signal({ process: pidRef(pid), signal: "KILL" });
    assert.equal((await reader.rest()).exit?.signal, "SIGKILL");
  });

  test("signalling an unknown or finished process is not_found", async () => {
    await assert.rejects(exec.signal({ process: pidRef(999_999), signal: "TERM" }), isCode(Code.NotFound));
    await assert.rejects(exec.signal({ process: keyRef(newKey("none")), signal: "TERM" }), isCode(Code.NotFound));
    const seen = await collectExec(exec.start({ process: { cmd: "true" } }));
    const pid = seen.started?.pid as number;
    await assert.rejects(exec.signal({ process: pidRef(pid), signal: "TERM" }), isCode(Code.NotFound));
  });

  test("without group the signal reaches the process alone; its grandchild lives on", async () => {
    const reader = new ExecReader(exec.start(sh("sleep 300 & echo $!; wait")));
    const { pid } = await reader.started();
    const grandchild = Number((await reader.until("stdout", /\d+\n/)).trim());
    await exec.signal({ process: pidRef(pid), signal: "TERM", group: false });
    const seen = await reader.rest();
    assert.equal(seen.exit?.signal, "SIGTERM");
    assert.ok(!isGoneOrZombie(grandchild), "the grandchild was not signalled");
    process.kill(grandchild, "SIGKILL");
  });

  test("with group the signal kills the grandchild too", async () => {
    const reader = new ExecReader(exec.start(sh("sleep 300 & echo $!; wait")));
    const { pid } = await reader.started();
    const grandchild = Number((await reader.until("stdout", /\d+\n/)).trim());
    await exec.signal({ process: pidRef(pid), signal: "TERM", group: true });
    const seen = await reader.rest();
    assert.equal(seen.exit?.reason, ExitReason.SIGNALED);
    assert.ok(await waitGone(grandchild), `grandchild ${grandchild} died with its group`);
  });
});

describe("timeouts", () => {
  test("timeout_ms ends the process with reason timeout and SIGTERM", async () => {
    const seen = await collectExec(exec.start({ process: { cmd: "sleep", args: ["30"] }, timeoutMs: 200n }));
    assert.equal(seen.exit?.reason, ExitReason.TIMEOUT);
    assert.equal(seen.exit?.signal, "SIGTERM");
    assert.match(seen.exit?.message ?? "", /timed out after 200 ms/);
  });

  test("a group that ignores SIGTERM gets SIGKILL after the grace time, grandchildren included", async () => {
    const reader = new ExecReader(
      exec.start(sh("trap '' TERM; sleep 300 & echo $!; wait", { timeoutMs: 200n, killGraceMs: 300n })),
    );
    await reader.started();
    const grandchild = Number((await reader.until("stdout", /\d+\n/)).trim());
    const seen = await reader.rest();
    assert.equal(seen.exit?.reason, ExitReason.TIMEOUT);
    assert.equal(seen.exit?.signal, "SIGKILL");
    assert.ok(await waitGone(grandchild), "the grandchild was killed with the group");
  });

  test("a process that handles SIGTERM and exits still reports the timeout", async () => {
    const seen = await collectExec(
      exec.start(sh("trap 'echo bye; exit 7' TERM; echo up; while :; do sleep 0.05; done", { timeoutMs: 300n })),
    );
    assert.equal(seen.exit?.reason, ExitReason.TIMEOUT);
    assert.equal(seen.exit?.exitCode, 7);
    assert.equal(seen.exit?.signal, "");
    assert.equal(Buffer.concat(seen.output.stdout).toString(), "up\nbye\n");
  });

  test("the timeout holds after the client disconnected", async () => {
    const key = newKey("timeout-detached");
    const abort = new AbortController();
    const reader = new ExecReader(
      exec.start({ process: { cmd: "sleep", args: ["30"] }, key, timeoutMs: 300n }, { signal: abort.signal }),
    );
    const { pid } = await reader.started();
    abort.abort();
    await reader.rest().catch(() => {});
    assert.ok(await waitGone(pid), "the process was killed while nobody was attached");
    const seen = await collectExec(exec.attach({ process: keyRef(key) }));
    assert.equal(seen.exit?.reason, ExitReason.TIMEOUT);
  });

  test("idle_timeout_ms ends a process that stops printing, with reason idle_timeout", async () => {
    const idle = await collectExec(exec.start(sh("echo one; echo two >&2; sleep 30", { idleTimeoutMs: 300n })));
    assert.equal(idle.exit?.reason, ExitReason.IDLE_TIMEOUT);
    assert.match(idle.exit?.message ?? "", /printed nothing for 300 ms/);
    assert.equal(Buffer.concat(idle.output.stdout).toString(), "one\n");
  });

  test("output keeps the idle timeout from firing", async () => {
    // Prints every 50 ms for a while; the idle limit is far above that gap.
    const seen = await collectExec(
      exec.start(sh("i=0; while [ $i -lt 20 ]; do echo $i; sleep 0.05; i=$((i+1)); done", { idleTimeoutMs: 3000n })),
    );
    assert.equal(seen.exit?.reason, ExitReason.EXITED);
    assert.equal(seen.exit?.exitCode, 0);
  });

  test("out-of-range limits are invalid_argument and start nothing", async () => {
    await assert.rejects(
      collectExec(exec.start({ process: { cmd: "true" }, timeoutMs: 2n ** 40n })),
      isCode(Code.InvalidArgument, /timeout_ms/),
    );
    await assert.rejects(
      collectExec(exec.start({ process: { cmd: "true" }, logLimitBytes: 1n << 30n })),
      isCode(Code.InvalidArgument, /log_limit_bytes/),
    );
  });
});

describe("exit reasons", () => {
  test("an exit code is reported as exited", async () => {
    const seen = await collectExec(exec.start(sh("exit 3")));
    assert.equal(seen.exit?.reason, ExitReason.EXITED);
    assert.equal(seen.exit?.exitCode, 3);
    assert.equal(seen.exit?.status, "exit status 3");
  });

  test("a SIGKILL without an OOM kill in the cgroup is a plain signal", async () => {
    const seen = await collectExec(exec.start(sh("kill -KILL $$")));
    assert.equal(seen.exit?.reason, ExitReason.SIGNALED);
    assert.equal(seen.exit?.signal, "SIGKILL");
  });

  test("the OOM counter of the agent's own memory cgroup is found and read", async (ctx) => {
    assert.equal(parseOomKills("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n"), 2);
    assert.equal(parseOomKills("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"), 5);
    assert.equal(parseOomKills("oom_kill_disable 0\nunder_oom 0\n"), undefined);
    const file = await findOomCounter();
    if (!file) {
      ctx.skip("no memory cgroup counter is visible here (no memory.events or memory.oom_control)");
      return;
    }
    assert.match(path.basename(file), /^memory\.(events|oom_control)$/);
    assert.equal(await readOomKills(file), parseOomKills(readFileSync(file, "utf8")));
    assert.ok(Number.isInteger(await readOomKills(file)));
  });
});

describe("output replay", () => {
  test("re-attaching from offset 0 after a disconnect returns the exact bytes; offsets are continuous", async () => {
    const key = newKey("replay");
    const n = 20_000;
    const abort = new AbortController();
    // Waits for stdin to close before printing the rest, so the disconnect happens mid-output.
    const reader = new ExecReader(
      exec.start(sh(`seq 1 100; cat >/dev/null; seq 101 ${n}; seq 1 50 >&2`, { key }), { signal: abort.signal }),
    );
    const { pid } = await reader.started();
    await reader.until("stdout", /\n100\n$/);
    abort.abort();
    await reader.rest().catch(() => {});
    // Nobody is attached while the process writes the rest.
    await t.process.closeStdin({ process: { selector: { case: "pid", value: pid } } });
    assert.ok(await waitGone(pid));

    const replay = await collectExec(exec.attach({ process: keyRef(key), from: {} }));
    assert.equal(replay.started?.existing, true);
    assert.deepEqual(replay.dropped, []);
    assert.equal(Buffer.concat(replay.output.stdout).toString(), seqOutput(n));
    assert.equal(Buffer.concat(replay.output.stderr).toString(), seqOutput(50));
    const stdoutEnd = assertContinuous(replay.offsets.stdout);
    const stderrEnd = assertContinuous(replay.offsets.stderr);
    assert.equal(replay.exit?.offsets?.stdout, stdoutEnd);
    assert.equal(replay.exit?.offsets?.stderr, stderrEnd);
  });

  test("attaching from a middle offset replays from exactly there", async () => {
    const key = newKey("middle");
    await collectExec(exec.start(sh("seq 1 5000", { key })));
    const full = Buffer.from(seqOutput(5000));
    const from = 12_345n;
    const seen = await collectExec(exec.attach({ process: keyRef(key), from: { stdout: from } }));
    assert.equal(seen.offsets.stdout[0]?.offset, from);
    assert.deepEqual(Buffer.concat(seen.output.stdout), full.subarray(Number(from)));
  });

  test("a log that overflowed says which bytes were dropped and replays the rest exactly", async () => {
    const key = newKey("overflow");
    const limit = 4096;
    const abort = new AbortController();
    const reader = new ExecReader(
      exec.start(sh("seq 1 30000", { key, logLimitBytes: BigInt(limit), lossy: true }), { signal: abort.signal }),
    );
    const { pid } = await reader.started();
    abort.abort();
    await reader.rest().catch(() => {});
    assert.ok(await waitGone(pid));
    const full = Buffer.from(seqOutput(30000));
    const seen = await collectExec(exec.attach({ process: keyRef(key) }));
    assert.equal(seen.dropped.length, 1);
    const dropped = seen.dropped[0];
    assert.equal(dropped.stream, OutputStream.STDOUT);
    assert.equal(dropped.from, 0n);
    assert.ok(dropped.to > 0n && dropped.to >= BigInt(full.length - limit), `first available ${dropped.to}`);
    assert.equal(seen.offsets.stdout[0]?.offset, dropped.to);
    assert.deepEqual(Buffer.concat(seen.output.stdout), full.subarray(Number(dropped.to)));
    assertContinuous(seen.offsets.stdout, dropped.to);
    assert.equal(seen.exit?.offsets?.stdout, BigInt(full.length));
    const { processes } = await exec.list({});
    const status = processes.find((p) => p.key === key);
    assert.equal(status?.firstAvailable?.stdout, dropped.to);
    assert.equal(status?.offsets?.stdout, BigInt(full.length));
  });

  test("live_only follows new output only", async () => {
    const reader = new ExecReader(exec.start(sh("echo early; read x; echo late", { stdin: true })));
    const { pid } = await reader.started();
    await reader.until("stdout", /early/);
    const live = new ExecReader(exec.attach({ process: pidRef(pid), liveOnly: true }));
    await live.started();
    await t.process.sendInput({
      process: { selector: { case: "pid", value: pid } },
      input: { input: { case: "stdin", value: Buffer.from("\n") } },
    });
    const seen = await live.rest();
    assert.equal(Buffer.concat(seen.output.stdout).toString(), "late\n");
    assert.equal(seen.offsets.stdout[0]?.offset, BigInt("early\n".length));
    await reader.rest();
  });

  test("a blocking reader that lags loses nothing even with a small log", async () => {
    const limit = 8192;
    const reader = new ExecReader(exec.start(sh("seq 1 200000", { logLimitBytes: BigInt(limit) })));
    await reader.started();
    let steps = 0;
    while (await reader.step()) {
      if (++steps % 20 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    assert.deepEqual(reader.seen.dropped, []);
    assert.equal(reader.text("stdout"), seqOutput(200000));
    assertContinuous(reader.seen.offsets.stdout);
  });
});

describe("idempotent start keys", () => {
  test("concurrent starts with one key make one process; all of them see it", async () => {
    const key = newKey("concurrent");
    const marker = path.join(t.dir, `${key}.runs`);
    const starts = Array.from({ length: 8 }, () =>
      collectExec(exec.start(sh(`echo run >> ${marker}; echo hello`, { key }))),
    );
    const results = await Promise.all(starts);
    const pids = new Set(results.map((r) => r.started?.pid));
    assert.equal(pids.size, 1, "one pid for every start");
    assert.equal(results.filter((r) => r.started?.existing === false).length, 1, "exactly one start spawned");
    for (const r of results) {
      assert.equal(Buffer.concat(r.output.stdout).toString(), "hello\n");
      assert.equal(r.exit?.reason, ExitReason.EXITED);
    }
    assert.equal(readFileSync(marker, "utf8"), "run\n", "the command ran once");
  });

  test("a key of a finished process answers with its output and end, spawning nothing", async () => {
    const key = newKey("finished");
    const marker = path.join(t.dir, `${key}.runs`);
    const first = await collectExec(exec.start(sh(`echo run >> ${marker}; echo out; exit 4`, { key })));
    const second = await collectExec(exec.start(sh(`echo run >> ${marker}; echo out; exit 4`, { key })));
    assert.equal(second.started?.pid, first.started?.pid);
    assert.equal(second.started?.existing, true);
    assert.equal(Buffer.concat(second.output.stdout).toString(), "out\n");
    assert.equal(second.exit?.exitCode, 4);
    assert.equal(readFileSync(marker, "utf8"), "run\n");
  });

  test("a key naming a different command is already_exists", async () => {
    const key = newKey("other");
    await collectExec(exec.start(sh("true", { key })));
    await assert.rejects(collectExec(exec.start(sh("false", { key }))), isCode(Code.AlreadyExists, /key/));
  });

  test("a start that cannot spawn gives its key back", async () => {
    const key = newKey("broken");
    await assert.rejects(
      collectExec(exec.start({ process: { cmd: "/nonexistent/binary" }, key })),
      isCode(Code.NotFound),
    );
    const seen = await collectExec(exec.start(sh("echo fine", { key })));
    assert.equal(seen.started?.existing, false);
    assert.equal(Buffer.concat(seen.output.stdout).toString(), "fine\n");
  });
});

describe("one process table for envd and Exec", () => {
  test("a process started through Exec is listed, connected to and signalled through envd", async () => {
    const key = newKey("shared");
    const reader = new ExecReader(exec.start(sh("echo hi; sleep 30", { key, tag: key })));
    const { pid } = await reader.started();
    await reader.until("stdout", /hi/);
    const { processes } = await t.process.list({});
    assert.ok(processes.some((p) => p.pid === pid && p.tag === key));
    const envd = new ProcessEventReader(t.process.connect({ process: { selector: { case: "tag", value: key } } }));
    assert.equal(await envd.started(), pid);
    await t.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: Signal.SIGTERM });
    const envdSeen = await envd.rest();
    assert.equal(envdSeen.end?.status, "signal: terminated");
    const seen = await reader.rest();
    assert.equal(seen.exit?.reason, ExitReason.SIGNALED);
    assert.equal(seen.exit?.signal, "SIGTERM");
  });

  test("a process started through envd is listed, replayed and signalled through Exec", async () => {
    const envd = new ProcessEventReader(
      t.process.start({ process: { cmd: "/bin/sh", args: ["-c", "echo from-envd; sleep 30"] } }),
    );
    const pid = await envd.started();
    await envd.until("stdout", /from-envd/);
    const { processes } = await exec.list({});
    const status = processes.find((p) => p.pid === pid);
    assert.equal(status?.running, true);
    assert.equal(status?.offsets?.stdout, BigInt("from-envd\n".length));
    const attached = new ExecReader(exec.attach({ process: pidRef(pid) }));
    await attached.until("stdout", /from-envd/);
    await exec.signal({ process: pidRef(pid), signal: "INT", group: true });
    const seen = await attached.rest();
    assert.equal(seen.exit?.signal, "SIGINT");
    assert.equal((await envd.rest()).end?.status, "signal: interrupt");
  });

  test("envd clients of a process started with a timeout see the kill as a signal", async () => {
    const reader = new ExecReader(exec.start({ process: { cmd: "sleep", args: ["30"] }, timeoutMs: 200n }));
    const { pid } = await reader.started();
    const envd = await collect(t.process.connect({ process: { selector: { case: "pid", value: pid } } }));
    assert.equal(envd.end?.status, "signal: terminated");
    assert.equal((await reader.rest()).exit?.reason, ExitReason.TIMEOUT);
  });
});

/** Waits for a process's state letter in /proc (T stopped, S sleeping, R running). */
async function waitState(pid: number, state: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const now = stat.slice(stat.lastIndexOf(")") + 2)[0];
    if (now === state || (state === "S" && now === "R")) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`process ${pid} never reached state ${state}`);
}
