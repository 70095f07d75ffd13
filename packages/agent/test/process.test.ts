import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { KEEPALIVE_INTERVAL_HEADER } from "@tether/protocol";
import { Process, Signal, type StreamInputRequestSchema } from "@tether/protocol/process";
import { createGrpcTransport, startTestAgent, type TestAgent } from "./support/agent.js";
import { isGoneOrZombie, waitGone } from "./support/exec-events.js";
import { collect, ProcessEventReader } from "./support/process-events.js";
import { createTestUser, userTool } from "./support/users.js";

let t: TestAgent;
before(async () => {
  t = await startTestAgent();
});
after(() => t.close());

const sh = (script: string, extra: Record<string, unknown> = {}) => ({
  process: { cmd: "/bin/sh", args: ["-c", script] },
  ...extra,
});

function isCode(code: Code, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${err}`);
    assert.equal(Code[err.code], Code[code], err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

describe("Start", () => {
  test("streams start, stdout and stderr, then one end with the exit status", async () => {
    const seen = await collect(t.process.start(sh("echo out; echo err >&2; exit 3")));
    assert.equal(seen.kinds[0], "start");
    assert.equal(seen.kinds.at(-1), "end");
    assert.equal(seen.kinds.filter((k) => k === "end").length, 1);
    assert.ok(seen.pid && seen.pid > 0);
    assert.equal(seen.stdout, "out\n");
    assert.equal(seen.stderr, "err\n");
    assert.equal(seen.end?.exitCode, 3);
    assert.equal(seen.end?.exited, true);
    assert.equal(seen.end?.status, "exit status 3");
    assert.equal(seen.end?.error, "exit status 3");
  });

  test("a clean exit has status 'exit status 0' and no error", async () => {
    const seen = await collect(t.process.start({ process: { cmd: "true" } }));
    assert.deepEqual(seen.kinds, ["start", "end"]);
    assert.equal(seen.end?.exitCode, 0);
    assert.equal(seen.end?.exited, true);
    assert.equal(seen.end?.status, "exit status 0");
    assert.equal(seen.end?.error, undefined);
  });

  test("a process killed by a signal reports exited=false, exit_code=-1 and Go's wording", async () => {
    const seen = await collect(t.process.start(sh("kill -KILL $$")));
    assert.equal(seen.end?.exited, false);
    assert.equal(seen.end?.exitCode, -1);
    assert.equal(seen.end?.status, "signal: killed");
  });

  test("SendSignal SIGTERM ends a process with 'signal: terminated'", async () => {
    const reader = new ProcessEventReader(t.process.start({ process: { cmd: "sleep", args: ["30"] } }));
    const pid = await reader.started();
    await t.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: Signal.SIGTERM });
    const seen = await reader.rest();
    assert.equal(seen.end?.status, "signal: terminated");
    assert.equal(seen.end?.exited, false);
    assert.equal(seen.end?.exitCode, -1);
  });

  test("a process that ignores SIGTERM survives it and dies with SIGKILL, group and all", async () => {
    // The shell and its sleep both ignore TERM (SIG_IGN survives exec).
    const reader = new ProcessEventReader(t.process.start(sh("trap '' TERM; sleep 30 & echo $!; wait")));
    const pid = await reader.started();
    const sleepPid = Number((await reader.until("stdout", /\d+\n/)).trim());
    const selector = { process: { selector: { case: "pid" as const, value: pid } } };
    await t.process.sendSignal({ ...selector, signal: Signal.SIGTERM });
    const { processes } = await t.process.list({});
    assert.ok(
      processes.some((p) => p.pid === pid),
      "still running after SIGTERM",
    );
    await t.process.sendSignal({ ...selector, signal: Signal.SIGKILL });
    const seen = await reader.rest();
    assert.equal(seen.end?.status, "signal: killed");
    assert.ok(isGoneOrZombie(sleepPid), `grandchild ${sleepPid} was killed with its group`);
  });

  test("a grandchild holding stdout open does not hold back the end event", async () => {
    const seen = await collect(t.process.start(sh("sleep 30 & echo hi")));
    assert.equal(seen.stdout, "hi\n");
    assert.equal(seen.end?.exitCode, 0);
    assert.equal(seen.end?.status, "exit status 0");
  });

  test("large output arrives complete and in order", async () => {
    const seen = await collect(t.process.start({ process: { cmd: "seq", args: ["1", "300000"] } }));
    const expected = `${Array.from({ length: 300000 }, (_, i) => i + 1).join("\n")}\n`;
    assert.equal(seen.stdout.length, expected.length);
    assert.ok(seen.stdout === expected, "stdout matches seq's output byte for byte");
    assert.equal(seen.end?.exitCode, 0);
  });

  test("keepalive events arrive at the interval the client asks for", async () => {
    const seen = await collect(
      t.process.start({ process: { cmd: "sleep", args: ["2.5"] } }, { headers: { [KEEPALIVE_INTERVAL_HEADER]: "1" } }),
    );
    assert.ok(seen.keepalives >= 1, `got ${seen.keepalives} keepalives`);
    assert.equal(seen.kinds[0], "start");
    assert.equal(seen.kinds.at(-1), "end");
  });

  test("no keepalive events without the header", async () => {
    const seen = await collect(t.process.start({ process: { cmd: "sleep", args: ["1.2"] } }));
    assert.equal(seen.keepalives, 0);
  });

  test("an empty cmd is invalid_argument", async () => {
    await assert.rejects(collect(t.process.start({ process: { cmd: "" } })), isCode(Code.InvalidArgument, /cmd/));
    await assert.rejects(collect(t.process.start({})), isCode(Code.InvalidArgument, /cmd/));
  });

  test("a cwd that does not exist is invalid_argument naming the path", async () => {
    await assert.rejects(
      collect(t.process.start({ process: { cmd: "pwd", cwd: "/no/such/dir-xyz" } })),
      isCode(Code.InvalidArgument, /\/no\/such\/dir-xyz/),
    );
  });

  test("an unknown program is invalid_argument naming it (envd's code for a failed spawn)", async () => {
    await assert.rejects(
      collect(t.process.start({ process: { cmd: "no-such-binary-xyz" } })),
      isCode(Code.InvalidArgument, /no-such-binary-xyz/),
    );
  });

  test("a program the user may not execute is invalid_argument too", async () => {
    const file = path.join(t.dir, "not-executable");
    writeFileSync(file, "#!/bin/sh\n", { mode: 0o644 });
    await assert.rejects(
      collect(t.process.start({ process: { cmd: file } })),
      isCode(Code.InvalidArgument, /not-executable/),
    );
  });

  test("cwd: the request's, relative ones against the home, else the agent default", async () => {
    const abs = await collect(t.process.start({ process: { cmd: "pwd", cwd: t.dir } }));
    assert.equal(abs.stdout.trim(), t.dir);
    const home = t.agent.context.users.current.home;
    const rel = await collect(t.process.start({ process: { cmd: "pwd", cwd: "." } }));
    assert.equal(rel.stdout.trim(), home);
    t.agent.context.state.defaultWorkdir = t.dir;
    try {
      const dflt = await collect(t.process.start({ process: { cmd: "pwd" } }));
      assert.equal(dflt.stdout.trim(), t.dir);
    } finally {
      t.agent.context.state.defaultWorkdir = undefined;
    }
  });

  test("env: agent defaults, then the user's identity, then the request's envs win", async () => {
    t.agent.context.state.envVars = { FROM_AGENT: "agent", BOTH: "agent", HOME: "/agent-home" };
    try {
      const seen = await collect(
        t.process.start(
          sh('echo "$FROM_AGENT $BOTH $HOME $USER"; echo "$PATH"', {
            process: {
              cmd: "/bin/sh",
              args: ["-c", 'echo "$FROM_AGENT $BOTH $HOME $USER"; echo "$PATH"'],
              envs: { BOTH: "request" },
            },
          }),
        ),
      );
      const user = t.agent.context.users.current;
      const [first, path] = seen.stdout.split("\n");
      assert.equal(first, `agent request ${user.home} ${user.name}`);
      assert.match(path, /\/usr\/bin/);
      const overridden = await collect(
        t.process.start({ process: { cmd: "/bin/sh", args: ["-c", "echo $HOME"], envs: { HOME: "/req-home" } } }),
      );
      assert.equal(overridden.stdout, "/req-home\n");
    } finally {
      t.agent.context.state.envVars = {};
    }
  });

  test("runs in its own process group", async () => {
    const seen = await collect(t.process.start(sh("ps -o pgid= -p $$ | tr -d ' '; echo $$")));
    const [pgid, pid] = seen.stdout.trim().split("\n");
    assert.equal(pgid, pid);
    assert.notEqual(Number(pgid), process.pid);
  });

  test("works over gRPC too", async () => {
    const grpc = createClient(Process, createGrpcTransport({ baseUrl: t.url }));
    const seen = await collect(grpc.start(sh("echo via grpc; exit 4")));
    assert.equal(seen.stdout, "via grpc\n");
    assert.equal(seen.end?.exitCode, 4);
    await assert.rejects(
      grpc.sendSignal({ process: { selector: { case: "pid", value: 0x7ffffff0 } }, signal: Signal.SIGKILL }),
      isCode(Code.NotFound),
    );
  });
});

describe("Connect and List", () => {
  test("Connect by tag re-attaches to a running process: live output, then its end", async () => {
    const tag = `tag-${process.pid}-running`;
    const starter = new ProcessEventReader(t.process.start(sh("read line; echo got $line", { tag })));
    const pid = await starter.started();
    const attached = new ProcessEventReader(t.process.connect({ process: { selector: { case: "tag", value: tag } } }));
    assert.equal(await attached.started(), pid);
    await t.process.sendInput({
      process: { selector: { case: "tag", value: tag } },
      input: { input: { case: "stdin", value: new TextEncoder().encode("hello\n") } },
    });
    const seen = await attached.rest();
    assert.equal(seen.stdout, "got hello\n");
    assert.equal(seen.end?.exitCode, 0);
    assert.equal((await starter.rest()).stdout, "got hello\n");
  });

  test("Connect to a finished process answers start and end at once, by pid and by tag", async () => {
    const tag = `tag-${process.pid}-finished`;
    const first = await collect(t.process.start(sh("echo done; exit 7", { tag })));
    const byPid = await collect(t.process.connect({ process: { selector: { case: "pid", value: first.pid ?? 0 } } }));
    assert.deepEqual(byPid.kinds, ["start", "end"]);
    assert.equal(byPid.pid, first.pid);
    assert.equal(byPid.end?.exitCode, 7);
    assert.equal(byPid.end?.status, "exit status 7");
    const byTag = await collect(t.process.connect({ process: { selector: { case: "tag", value: tag } } }));
    assert.deepEqual(byTag.kinds, ["start", "end"]);
    assert.equal(byTag.end?.exitCode, 7);
  });

  test("unknown pid or tag is not_found for every method", async () => {
    const pid = { process: { selector: { case: "pid" as const, value: 0x7ffffff0 } } };
    const tag = { process: { selector: { case: "tag" as const, value: "no-such-tag" } } };
    await assert.rejects(collect(t.process.connect(pid)), isCode(Code.NotFound, /pid/));
    await assert.rejects(collect(t.process.connect(tag)), isCode(Code.NotFound, /no-such-tag/));
    await assert.rejects(t.process.sendSignal({ ...pid, signal: Signal.SIGKILL }), isCode(Code.NotFound));
    await assert.rejects(
      t.process.sendInput({ ...tag, input: { input: { case: "stdin", value: new Uint8Array([1]) } } }),
      isCode(Code.NotFound),
    );
    await assert.rejects(t.process.closeStdin(pid), isCode(Code.NotFound));
    await assert.rejects(t.process.update({ ...pid, pty: { size: { cols: 10, rows: 10 } } }), isCode(Code.NotFound));
  });

  test("List shows running processes with their config and tag, not finished ones", async () => {
    const tag = `tag-${process.pid}-list`;
    const reader = new ProcessEventReader(
      t.process.start({ process: { cmd: "sleep", args: ["30"], envs: { X: "1" }, cwd: t.dir }, tag }),
    );
    const pid = await reader.started();
    const listed = (await t.process.list({})).processes.find((p) => p.pid === pid);
    assert.ok(listed, "the running process is listed");
    assert.equal(listed.tag, tag);
    assert.equal(listed.config?.cmd, "sleep");
    assert.deepEqual(listed.config?.args, ["30"]);
    assert.deepEqual(listed.config?.envs, { X: "1" });
    assert.equal(listed.config?.cwd, t.dir);
    await t.process.sendSignal({ process: { selector: { case: "tag", value: tag } }, signal: Signal.SIGKILL });
    await reader.rest();
    assert.ok(!(await t.process.list({})).processes.some((p) => p.pid === pid));
  });
});

describe("Deadlines (Connect-Timeout-Ms, as envd's clients send them)", () => {
  // Sent as a plain header: connect-es's own timeoutMs would also end the call client-side,
  // hiding what the agent answers (the Python SDK waits for it).
  const deadline = (ms: number) => ({ headers: { "connect-timeout-ms": String(ms) } });

  test("Start: the process is killed at the deadline and the stream ends with deadline_exceeded", async () => {
    const reader = new ProcessEventReader(t.process.start(sh("sleep 30"), deadline(300)));
    const pid = await reader.started();
    await assert.rejects(reader.rest(), isCode(Code.DeadlineExceeded));
    assert.ok(await waitGone(pid), "the process is killed at the deadline");
  });

  test("Start: a process that ends first ends the stream as usual", async () => {
    const seen = await collect(t.process.start(sh("echo quick"), deadline(30_000)));
    assert.equal(seen.stdout, "quick\n");
    assert.equal(seen.end?.exitCode, 0);
  });

  test("Connect: the stream ends with deadline_exceeded and the process runs on", async () => {
    const starter = new ProcessEventReader(t.process.start(sh("sleep 30")));
    const pid = await starter.started();
    const attached = new ProcessEventReader(
      t.process.connect({ process: { selector: { case: "pid", value: pid } } }, deadline(200)),
    );
    assert.equal(await attached.started(), pid);
    await assert.rejects(attached.rest(), isCode(Code.DeadlineExceeded));
    assert.ok(!isGoneOrZombie(pid), "Connect's deadline does not touch the process");
    await t.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: Signal.SIGKILL });
    assert.equal((await starter.rest()).end?.status, "signal: killed");
  });
});

describe("Input", () => {
  test("SendInput then CloseStdin feeds cat and lets it finish", async () => {
    const reader = new ProcessEventReader(t.process.start({ process: { cmd: "cat" } }));
    const pid = await reader.started();
    const selector = { process: { selector: { case: "pid" as const, value: pid } } };
    await t.process.sendInput({ ...selector, input: { input: { case: "stdin", value: Buffer.from("abc") } } });
    await reader.until("stdout", /abc/);
    await t.process.closeStdin(selector);
    const seen = await reader.rest();
    assert.equal(seen.stdout, "abc");
    assert.equal(seen.end?.exitCode, 0);
  });

  test("StreamInput sends start, then data events (keepalives ignored)", async () => {
    const reader = new ProcessEventReader(t.process.start({ process: { cmd: "cat" }, stdin: true }));
    const pid = await reader.started();
    async function* input(): AsyncGenerator<MessageInitShape<typeof StreamInputRequestSchema>> {
      yield {
        event: { case: "start" as const, value: { process: { selector: { case: "pid" as const, value: pid } } } },
      };
      yield {
        event: {
          case: "data" as const,
          value: { input: { input: { case: "stdin" as const, value: Buffer.from("one ") } } },
        },
      };
      yield { event: { case: "keepalive" as const, value: {} } };
      yield {
        event: {
          case: "data" as const,
          value: { input: { input: { case: "stdin" as const, value: Buffer.from("two") } } },
        },
      };
    }
    await t.process.streamInput(input());
    await reader.until("stdout", /one two/);
    await t.process.closeStdin({ process: { selector: { case: "pid", value: pid } } });
    assert.equal((await reader.rest()).stdout, "one two");
  });

  test("StreamInput data before start is failed_precondition", async () => {
    async function* input(): AsyncGenerator<MessageInitShape<typeof StreamInputRequestSchema>> {
      yield {
        event: {
          case: "data" as const,
          value: { input: { input: { case: "stdin" as const, value: Buffer.from("x") } } },
        },
      };
    }
    await assert.rejects(t.process.streamInput(input()), isCode(Code.FailedPrecondition, /start/));
  });

  test("stdin: false gives the child an empty stdin and refuses input", async () => {
    const eof = await collect(t.process.start({ process: { cmd: "cat" }, stdin: false }));
    assert.equal(eof.stdout, "");
    assert.equal(eof.end?.exitCode, 0);
    const reader = new ProcessEventReader(t.process.start({ process: { cmd: "sleep", args: ["30"] }, stdin: false }));
    const pid = await reader.started();
    const selector = { process: { selector: { case: "pid" as const, value: pid } } };
    await assert.rejects(
      t.process.sendInput({ ...selector, input: { input: { case: "stdin", value: Buffer.from("x") } } }),
      isCode(Code.FailedPrecondition, /without stdin/),
    );
    await assert.rejects(
      t.process.update({ ...selector, pty: { size: { cols: 1, rows: 1 } } }),
      isCode(Code.FailedPrecondition, /PTY/),
    );
    await t.process.sendSignal({ ...selector, signal: Signal.SIGKILL });
    await reader.rest();
  });
});

describe("PTY", () => {
  test("a PTY child sees its size, is resized by Update and reads pty input", async () => {
    const reader = new ProcessEventReader(
      t.process.start({
        process: { cmd: "/bin/sh", args: ["-c", "stty size; read x; stty size; echo got-$x"] },
        pty: { size: { cols: 80, rows: 24 } },
      }),
    );
    const pid = await reader.started();
    await reader.until("pty", /24 80/);
    const selector = { process: { selector: { case: "pid" as const, value: pid } } };
    // An Update without a pty changes nothing and answers OK, as envd's does.
    await t.process.update(selector);
    await t.process.update({ ...selector, pty: { size: { cols: 100, rows: 40 } } });
    await t.process.sendInput({ ...selector, input: { input: { case: "pty", value: Buffer.from("hey\r") } } });
    const seen = await reader.rest();
    assert.match(seen.pty, /40 100/);
    assert.match(seen.pty, /got-hey/);
    assert.equal(seen.end?.exitCode, 0);
  });

  test("a PTY takes 0x04 for EOF and refuses CloseStdin and stdin input", async () => {
    const reader = new ProcessEventReader(
      t.process.start({ process: { cmd: "cat" }, pty: { size: { cols: 80, rows: 24 } } }),
    );
    const pid = await reader.started();
    const selector = { process: { selector: { case: "pid" as const, value: pid } } };
    await assert.rejects(t.process.closeStdin(selector), isCode(Code.FailedPrecondition, /0x04/));
    await assert.rejects(
      t.process.sendInput({ ...selector, input: { input: { case: "stdin", value: Buffer.from("x") } } }),
      isCode(Code.FailedPrecondition, /pty/),
    );
    await t.process.sendInput({ ...selector, input: { input: { case: "pty", value: Buffer.from([0x04]) } } });
    const seen = await reader.rest();
    assert.equal(seen.end?.exitCode, 0);
  });

  test("a PTY with an unknown program is invalid_argument", async () => {
    await assert.rejects(
      collect(t.process.start({ process: { cmd: "no-such-binary-xyz" }, pty: { size: { cols: 80, rows: 24 } } })),
      isCode(Code.InvalidArgument, /no-such-binary-xyz/),
    );
  });
});

describe("Users", () => {
  test("an unknown Basic-auth user is unauthenticated, as envd answers", async () => {
    const client = createClient(Process, t.transport({ authorization: basicAuth("no-such-user-xyz") }));
    await assert.rejects(
      collect(client.start({ process: { cmd: "true" } })),
      isCode(Code.Unauthenticated, /no-such-user-xyz/),
    );
  });

  test("a numeric user outside 0..2^32-2 is refused, not wrapped to root", async () => {
    for (const name of ["4294967296", "4294967295", "18446744073709551616"]) {
      const client = createClient(Process, t.transport({ authorization: basicAuth(name) }));
      await assert.rejects(collect(client.start(sh("id -u"))), isCode(Code.PermissionDenied, new RegExp(name)));
    }
  });

  const isRoot = process.getuid?.() === 0;
  test("as root, the Basic-auth user selects uid, gid, groups and HOME", {
    skip: !isRoot && "needs root to create a user and switch to it",
  }, async () => {
    const group = `tethg${process.pid}`;
    userTool("groupadd", [group]);
    const user = createTestUser("tether", { groups: [group] });
    const { name, uid } = user;
    try {
      const extraGid = readFileSync("/etc/group", "utf8")
        .split("\n")
        .find((l) => l.startsWith(`${group}:`))
        ?.split(":")[2];
      const client = createClient(Process, t.transport({ authorization: basicAuth(name) }));
      const seen = await collect(client.start(sh('id -u; id -G; echo "$HOME $USER"; pwd')));
      const [idU, idG, homeUser, cwd] = seen.stdout.trim().split("\n");
      assert.equal(Number(idU), uid);
      assert.ok(idG.split(" ").includes(String(extraGid)), `supplementary group ${extraGid} kept: ${idG}`);
      assert.ok(!idG.split(" ").includes("0"), `root's group dropped: ${idG}`);
      assert.equal(homeUser, `/home/${name} ${name}`);
      assert.equal(cwd, `/home/${name}`);
      const pty = await collect(
        client.start({
          process: { cmd: "/bin/sh", args: ["-c", "id -u; id -G"] },
          pty: { size: { cols: 80, rows: 24 } },
        }),
      );
      const [ptyU, ptyG] = pty.pty.trim().split(/\r?\n/);
      assert.equal(Number(ptyU), uid);
      assert.ok(!ptyG.split(" ").includes("0"), `root's group dropped in a PTY: ${ptyG}`);
    } finally {
      user.remove();
      userTool("groupdel", [group]);
    }
  });
});

describe("shutdown", () => {
  test("closing the agent kills every process group it started", async () => {
    const own = await startTestAgent();
    try {
      const reader = new ProcessEventReader(own.process.start(sh("sleep 300 & echo $!; wait")));
      const pid = await reader.started();
      const sleepPid = Number((await reader.until("stdout", /\d+\n/)).trim());
      await own.close();
      // The stream ends with the agent; drain it so nothing dangles.
      await reader.rest().catch(() => undefined);
      assert.ok(await waitGone(pid, 100), `child ${pid} is gone`);
      assert.ok(await waitGone(sleepPid, 100), `grandchild ${sleepPid} is gone`);
    } finally {
      await own.close().catch(() => undefined);
    }
  });
});

function basicAuth(user: string): string {
  return `Basic ${Buffer.from(`${user}:`).toString("base64")}`;
}
