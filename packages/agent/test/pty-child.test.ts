import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ProcessConfigSchema } from "@tether/protocol/process";
import { type Child, spawnChild } from "../src/process/child.js";
import type { ExitStatus } from "../src/process/exit-status.js";

/** A PTY child running `script`, with what it printed and how it ended. */
async function ptyChild(script: string): Promise<{ child: Child; output: () => string; ended: Promise<ExitStatus> }> {
  const chunks: Buffer[] = [];
  let ended!: (status: ExitStatus) => void;
  const end = new Promise<ExitStatus>((resolve) => {
    ended = resolve;
  });
  const child = await spawnChild(
    {
      config: create(ProcessConfigSchema, { cmd: "/bin/sh", args: ["-c", script] }),
      file: "/bin/sh",
      args: ["-c", script],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TERM: "dumb" },
      cwd: "/",
      pty: { cols: 80, rows: 24 },
      stdin: true,
    },
    {
      onOutput: (_kind, chunk) => chunks.push(Buffer.from(chunk)),
      onEnd: (status) => ended(status),
    },
  );
  return { child, output: () => Buffer.concat(chunks).toString(), ended: end };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), "timed out waiting");
}

describe("PTY children", () => {
  test("output written while paused by a slow reader survives the child's exit", async () => {
    // The reader is slow from the start: the child's last words sit in the terminal while
    // it exits. node-pty destroys the terminal 200 ms after its child exits, unread or not.
    const { child, output, ended } = await ptyChild("printf ready; sleep 0.3; printf last-words; exit 3");
    await until(() => output().includes("ready"));
    child.pauseOutput();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    child.resumeOutput();
    const status = await ended;
    assert.equal(status.exitCode, 3);
    assert.match(output(), /last-words/);
  });

  test("a reader that never resumes still gets the end, and every byte before it", async () => {
    // About 4 KB, written while nobody reads: it waits in the terminal when the child exits.
    const { child, output, ended } = await ptyChild(
      "printf ready; sleep 0.2; printf 'last-words '; seq -s ' ' 1 1000; exit 4",
    );
    await until(() => output().includes("ready"));
    child.pauseOutput();
    const status = await ended;
    assert.equal(status.exitCode, 4);
    const numbers = Array.from({ length: 1000 }, (_, i) => i + 1).join(" ");
    assert.ok(output().endsWith(`last-words ${numbers}\r\n`), output().slice(-100));
  });

  test("pausing and resuming a live PTY loses nothing and holds its output back meanwhile", async () => {
    const { child, output, ended } = await ptyChild(
      "printf ready; read line; printf 'got:%s' \"$line\"; read more; exit 0",
    );
    await until(() => output().includes("ready"));
    child.pauseOutput();
    await child.write(Buffer.from("hello\r"));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The child answered at once, but nothing of it comes through while paused.
    assert.doesNotMatch(output(), /got:hello/);
    child.resumeOutput();
    await until(() => output().includes("got:hello"));
    await child.write(Buffer.from("bye\r"));
    const status = await ended;
    assert.equal(status.exitCode, 0);
  });
});
