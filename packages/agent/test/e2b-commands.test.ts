import assert from "node:assert/strict";
import { chmodSync } from "node:fs";
import { after, before, test } from "node:test";
import { CommandExitError, type Sandbox, TimeoutError } from "e2b";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { e2bSandbox } from "./support/e2b.js";
import { waitGone } from "./support/exec-events.js";
import { createTestUser, isRoot, type TestUser } from "./support/users.js";

let t: TestAgent;
let sandbox: Sandbox;
let user: TestUser | undefined;
before(async () => {
  // The SDK runs every command through `bash -l`, which reads the user's login profile. The
  // host's root profile is not ours (here it runs pyenv, which can block on a stale lock), so
  // commands run as a fresh user whose profile is Debian's skeleton.
  if (isRoot) user = createTestUser("tethere2b", { shell: "/bin/bash" });
  else console.log("# not root: e2b commands run as the current user, with its login profile");
  t = await startTestAgent({ defaultUser: user?.name });
  chmodSync(t.dir, 0o755);
  sandbox = await e2bSandbox(t);
});
after(async () => {
  await t.close();
  user?.remove();
});

test("commands.run streams stdout and stderr to the callbacks and exits 0", async () => {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const result = await sandbox.commands.run("echo out; echo err >&2", {
    onStdout: (data) => {
      stdout.push(data);
    },
    onStderr: (data) => {
      stderr.push(data);
    },
  });
  assert.equal(result.exitCode, 0);
  assert.equal(result.stdout, "out\n");
  assert.equal(result.stderr, "err\n");
  assert.equal(stdout.join(""), "out\n");
  assert.equal(stderr.join(""), "err\n");
});

test("commands.run passes envs and cwd", async () => {
  const result = await sandbox.commands.run('echo "$GREETING"; pwd', { envs: { GREETING: "hello" }, cwd: t.dir });
  assert.equal(result.stdout, `hello\n${t.dir}\n`);
});

test("a non-zero exit throws CommandExitError with the exit code and output", async () => {
  const err = await sandbox.commands.run("echo partial; echo bad >&2; exit 3").then(
    () => assert.fail("expected CommandExitError"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CommandExitError, `got ${err}`);
  assert.equal(err.exitCode, 3);
  assert.equal(err.stdout, "partial\n");
  assert.equal(err.stderr, "bad\n");
  assert.match(err.message, /exit status 3/);
});

test("an unknown cwd is an error naming the directory", async () => {
  await assert.rejects(sandbox.commands.run("true", { cwd: "/no/such/dir-xyz" }), /\/no\/such\/dir-xyz/);
});

test("background: a command runs on and handle.wait() returns its result", async () => {
  const handle = await sandbox.commands.run("sleep 0.3; echo finished", { background: true });
  assert.ok(handle.pid > 0);
  const result = await handle.wait();
  assert.equal(result.exitCode, 0);
  assert.equal(result.stdout, "finished\n");
});

test("commands.connect re-attaches to a background command by pid", async () => {
  const handle = await sandbox.commands.run("read line; echo got $line", { background: true, stdin: true });
  await handle.disconnect();
  const attached = await sandbox.commands.connect(handle.pid);
  await sandbox.commands.sendStdin(handle.pid, "again\n");
  const result = await attached.wait();
  assert.equal(result.stdout, "got again\n");
});

test("commands.list shows a running command; commands.kill ends it", async () => {
  const handle = await sandbox.commands.run("sleep 30", { background: true });
  const listed = (await sandbox.commands.list()).find((p) => p.pid === handle.pid);
  assert.ok(listed, "the background command is listed");
  assert.equal(listed.cmd, "/bin/bash");
  assert.deepEqual(listed.args, ["-l", "-c", "sleep 30"]);
  assert.equal(await sandbox.commands.kill(handle.pid), true);
  const err = await handle.wait().then(
    () => assert.fail("a killed command does not succeed"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CommandExitError, `got ${err}`);
  assert.equal(err.exitCode, -1);
  assert.match(err.message, /signal: killed/);
  assert.ok(!(await sandbox.commands.list()).some((p) => p.pid === handle.pid));
  assert.equal(await sandbox.commands.kill(handle.pid), false, "killing it again finds nothing");
});

test("a command past its timeoutMs throws TimeoutError and is killed, as envd does", async () => {
  // The SDK sends timeoutMs as Connect-Timeout-Ms; envd runs the process under that deadline.
  const handle = await sandbox.commands.run("sleep 30", { background: true, timeoutMs: 500 });
  await assert.rejects(handle.wait(), (err: unknown) => err instanceof TimeoutError);
  assert.ok(await waitGone(handle.pid), "the process is killed at the deadline");
  assert.equal(await sandbox.commands.kill(handle.pid), false, "nothing is left to kill");
});

test("stdin: sendStdin feeds a background command and closeStdin ends its input", async () => {
  const handle = await sandbox.commands.run("cat; echo '<eof>'", { background: true, stdin: true });
  await handle.sendStdin("first ");
  await sandbox.commands.sendStdin(handle.pid, "second");
  await handle.closeStdin();
  const result = await handle.wait();
  assert.equal(result.stdout, "first second<eof>\n");
});

test("pty: create, sendInput, resize and kill", async () => {
  const decoder = new TextDecoder();
  let output = "";
  let notify: (() => void) | undefined;
  const seen = async (pattern: RegExp) => {
    while (!pattern.test(output)) await new Promise<void>((resolve) => (notify = resolve));
  };
  const terminal = await sandbox.pty.create({
    cols: 80,
    rows: 24,
    onData: (data) => {
      output += decoder.decode(data, { stream: true });
      notify?.();
    },
  });
  assert.ok(terminal.pid > 0);
  const send = (text: string) => sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode(text));
  await send("echo pty-$((40+2))\n");
  await seen(/pty-42/);
  await sandbox.pty.resize(terminal.pid, { cols: 100, rows: 40 });
  await send("stty size\n");
  await seen(/40 100/);
  assert.equal(await sandbox.pty.kill(terminal.pid), true);
  const err = await terminal.wait().then(
    () => assert.fail("a killed PTY does not succeed"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CommandExitError, `got ${err}`);
  assert.equal(err.exitCode, -1);
});
