import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type RunningAgent, startAgent } from "@tether/agent";
import { embeddedBackendKind } from "@tether/host";
import * as pty from "node-pty";
import { type Outcome, runTether, TETHER, type TetherOptions } from "./support/cli.js";

/** A scratch TMPDIR and TETHER_HOME per test file, so we can see that `run` leaves nothing behind. */
const tmp = mkdtempSync(path.join(os.tmpdir(), "tether-cli-test-"));
const home = path.join(tmp, "home");
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs the real `tether` bin with this file's TMPDIR and TETHER_HOME. */
function tether(args: string[], options: TetherOptions = {}): Promise<Outcome> {
  return runTether(args, { ...options, env: { TMPDIR: tmp, TETHER_HOME: home, ...options.env } });
}

/** Without bubblewrap (lifecycle.test covers both), `tether run`'s default is local, which says so on stderr first. */
const embeddedIsLocal = (await embeddedBackendKind()) === "local";
const NO_ISOLATION = /^tether: warning: sandbox \S+ uses backend local: NO isolation[^\n]*\n/;

/** What the command wrote to stderr, after the warning local gives (which must be there when local is used). */
function commandStderr(stderr: string): string {
  if (!embeddedIsLocal) return stderr;
  assert.match(stderr, NO_ISOLATION);
  return stderr.replace(NO_ISOLATION, "");
}

/** `tether run` must remove its sandbox (and any scratch home), whatever happened. */
function assertNoLeftovers() {
  assert.deepEqual(
    readdirSync(tmp).filter((n) => n.startsWith("tether-run-")),
    [],
  );
  assert.deepEqual(
    readdirSync(path.join(home, "sandboxes"), { withFileTypes: true }).filter((d) => d.isDirectory()),
    [],
  );
}

describe("tether run", () => {
  test("runs a command and prints its output", async () => {
    const r = await tether(["run", "--", "echo", "hi"]);
    assert.equal(r.stdout, "hi\n");
    assert.equal(commandStderr(r.stderr), "");
    assert.equal(r.code, 0);
    assertNoLeftovers();
  });

  test("passes the exit code through, with stderr", async () => {
    const r = await tether(["run", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    assert.equal(r.code, 3);
    assert.equal(commandStderr(r.stderr), "oops\n");
    assertNoLeftovers();
  });

  test("flags after the command belong to the command", async () => {
    const r = await tether(["run", "sh", "-c", "echo $0", "-x"]);
    assert.equal(r.stdout, "-x\n");
  });

  test("pipes stdin through", async () => {
    const r = await tether(["run", "--", "tr", "a-z", "A-Z"], { input: "hello\nworld\n" });
    assert.equal(r.stdout, "HELLO\nWORLD\n");
    assert.equal(r.code, 0);
  });

  test("-e and -w set env and working directory", async () => {
    // A directory the sandbox sees too (under bwrap the host's /tmp is not visible).
    const r = await tether(["run", "-e", "GREETING=hi there", "-w", "/usr", "--", "sh", "-c", 'echo "$GREETING"; pwd']);
    assert.equal(r.stdout, "hi there\n/usr\n");
  });

  test("death by signal gives 128 + signal", async () => {
    const r = await tether(["run", "--", "sh", "-c", "kill -KILL $$"]);
    assert.equal(r.code, 137);
  });

  test("an unknown executable gives 127 and says so", async () => {
    const r = await tether(["run", "--", "no-such-command-here"]);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /no-such-command-here/);
    assertNoLeftovers();
  });

  test("Ctrl-C stops the command, the agent and cleans up (exit 130)", async () => {
    const r = await tether(
      ["run", "--", "sh", "-c", 'trap "echo stopping; exit 1" TERM; echo ready; sleep 60 & wait'],
      {
        onStdout: (out, kill) => {
          if (out === "ready\n") kill("SIGINT");
        },
      },
    );
    assert.equal(r.code, 130);
    assert.equal(r.stdout, "ready\nstopping\n");
    assertNoLeftovers();
  });

  test("a reader that goes away stops the command, like a local pipeline (exit 141)", async () => {
    const child = spawn(process.execPath, [TETHER, "run", "--", "yes"], {
      env: { ...process.env, TMPDIR: tmp },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (t: string) => {
      stderr += t;
    });
    child.stdout.once("data", () => child.stdout.destroy());
    const [code] = (await once(child, "close")) as [number | null];
    assert.equal(code, 141);
    assert.equal(commandStderr(stderr), "");
    assertNoLeftovers();
  });

  test("a bad flag gives a clear error and exit 2", async () => {
    const r = await tether(["run", "--bogus", "--", "echo"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--bogus'/);
    assert.equal(r.stdout, "");
  });

  test("a bad -e gives a clear error", async () => {
    const r = await tether(["run", "-e", "1BAD=x", "--", "true"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /"1BAD=x" is not KEY=VALUE/);
  });
});

describe("tether exec", () => {
  let agent: RunningAgent;
  const token = "cli-test-token";
  before(async () => {
    agent = await startAgent({
      port: 0,
      socket: path.join(tmp, "exec.sock"),
      accessToken: token,
      logLevel: "silent",
    });
  });
  after(() => agent.close());

  test("runs in an agent over TCP", async () => {
    const r = await tether([
      "exec",
      "--agent",
      agent.url as string,
      "--token",
      token,
      "--",
      "sh",
      "-c",
      "echo tcp; exit 4",
    ]);
    assert.equal(r.stdout, "tcp\n");
    assert.equal(r.code, 4);
  });

  test("runs in an agent over a unix socket, token from the environment", async () => {
    const r = await tether(["exec", "--socket", agent.socket as string, "--", "echo", "unix"], {
      env: { TETHER_ACCESS_TOKEN: token },
    });
    assert.equal(r.stdout, "unix\n");
    assert.equal(r.code, 0);
  });

  test("-i forwards stdin; without it stdin is empty", async () => {
    const withInput = await tether(
      ["exec", "--socket", agent.socket as string, "--token", token, "-i", "--", "wc", "-c"],
      {
        input: "12345",
      },
    );
    assert.equal(withInput.stdout.trim(), "5");
    const without = await tether(["exec", "--socket", agent.socket as string, "--token", token, "--", "wc", "-c"], {
      input: "12345",
    });
    assert.equal(without.stdout.trim(), "0");
  });

  test("a wrong token fails clearly", async () => {
    const r = await tether(["exec", "--agent", agent.url as string, "--token", "wrong", "--", "true"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /access token/);
  });

  test("no agent named is a usage error", async () => {
    const r = await tether(["exec", "--", "true"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--agent URL or --socket PATH/);
  });

  test("an agent that is not there fails clearly", async () => {
    const r = await tether(["exec", "--socket", path.join(tmp, "absent.sock"), "--", "true"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /unreachable.*absent\.sock/);
  });

  test("-t runs on a PTY: raw mode (Ctrl-C travels as a byte), size, resize, exit code", async () => {
    const script = [
      'trap "echo caught-int; exit 7" INT',
      "stty size",
      "read line",
      // Wait for the resize to arrive rather than for a fixed time.
      'while [ "$(stty size)" = "30 90" ]; do sleep 0.05; done',
      "stty size",
      'echo "got $line"',
      "while :; do sleep 0.05; done",
    ].join("\n");
    const term = pty.spawn(
      process.execPath,
      [TETHER, "exec", "--socket", agent.socket as string, "--token", token, "-t", "-i", "--", "sh", "-c", script],
      { cols: 90, rows: 30, env: { ...process.env, TMPDIR: tmp } as Record<string, string> },
    );
    let output = "";
    const waiters: { pattern: RegExp; resolve: () => void }[] = [];
    term.onData((d) => {
      output += d;
      for (const w of waiters.filter((w) => w.pattern.test(output))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    });
    const seen = (pattern: RegExp) =>
      pattern.test(output) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ pattern, resolve }));
    const exit = new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)));
    await seen(/30 90/);
    term.resize(120, 40);
    term.write("hello\r");
    await seen(/got hello/);
    assert.match(output, /40 120/);
    // In raw mode the local terminal does not turn ^C into SIGINT for tether: it reaches the remote shell.
    term.write("\x03");
    assert.equal(await exit, 7);
    assert.match(output, /caught-int/);
  });
});
