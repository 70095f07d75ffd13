import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CommandExitError, type OutputChunk } from "../src/index.js";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";

let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: "sdk-test-token" });
});
after(() => t.close());

for (const transport of TRANSPORTS) {
  describe(`commands over ${transport}`, () => {
    test("run returns stdout, stderr and exit code 0", async () => {
      const agent = t.client(transport);
      const result = await agent.commands.run(["sh", "-c", "echo out; echo err >&2"]);
      assert.equal(result.exitCode, 0);
      assert.equal(result.stdout, "out\n");
      assert.equal(result.stderr, "err\n");
      assert.equal(result.signal, undefined);
    });

    test("a string runs through /bin/sh -c", async () => {
      const agent = t.client(transport);
      const result = await agent.commands.run("echo $((40 + 2)) | tr 4 x");
      assert.equal(result.stdout, "x2\n");
    });

    test("envs and cwd reach the command", async () => {
      const agent = t.client(transport);
      const result = await agent.commands.run(["sh", "-c", 'echo "$GREETING" && pwd'], {
        envs: { GREETING: "hello there" },
        cwd: t.dir,
      });
      assert.equal(result.stdout, `hello there\n${t.dir}\n`);
    });

    test("a non-zero exit throws CommandExitError with argv, output and a clear message", async () => {
      const agent = t.client(transport);
      const err = await agent.commands.run(["sh", "-c", "echo partial; echo broken >&2; exit 3"]).then(
        () => assert.fail("expected a CommandExitError"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof CommandExitError);
      assert.deepEqual(err.argv, ["sh", "-c", "echo partial; echo broken >&2; exit 3"]);
      assert.equal(err.exitCode, 3);
      assert.equal(err.stdout, "partial\n");
      assert.equal(err.stderr, "broken\n");
      assert.match(err.status, /3/);
      assert.match(err.message, /failed with exit code 3: sh -c 'echo partial; echo broken >&2; exit 3'/);
      assert.match(err.message, /broken/);
    });

    test("reject: false returns the failure instead of throwing", async () => {
      const agent = t.client(transport);
      const result = await agent.commands.run(["sh", "-c", "exit 7"], { reject: false });
      assert.equal(result.exitCode, 7);
    });

    test("callbacks get the output as it comes", async () => {
      const agent = t.client(transport);
      const out: string[] = [];
      const err: string[] = [];
      await agent.commands.run(["sh", "-c", "printf a; printf b >&2; printf c"], {
        onStdout: (d) => {
          out.push(Buffer.from(d).toString());
        },
        onStderr: (d) => {
          err.push(Buffer.from(d).toString());
        },
      });
      assert.equal(out.join(""), "ac");
      assert.equal(err.join(""), "b");
    });

    test("stdin data is streamed and then closed", async () => {
      const agent = t.client(transport);
      const big = Buffer.alloc(3 << 20, "x");
      const result = await agent.commands.run(["wc", "-c"], { stdin: big });
      assert.equal(result.stdout.trim(), String(big.length));
      const lines = await agent.commands.run(["cat"], {
        stdin: (async function* () {
          yield "one\n";
          yield Buffer.from("two\n");
        })(),
      });
      assert.equal(lines.stdout, "one\ntwo\n");
    });

    test("start gives a handle: pid, sendStdin, closeStdin, wait", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["cat"], { stdin: true });
      assert.ok(handle.pid > 0);
      await handle.sendStdin("hello ");
      await handle.sendStdin(Buffer.from("world"));
      await handle.closeStdin();
      const result = await handle.wait();
      assert.equal(result.stdout, "hello world");
    });

    test("a handle iterates its output in order", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["sh", "-c", "echo 1; echo 2 >&2; echo 3"]);
      const chunks: OutputChunk[] = [];
      for await (const chunk of handle) chunks.push(chunk);
      const text = (kind: string) => Buffer.concat(chunks.filter((c) => c.kind === kind).map((c) => c.data)).toString();
      assert.equal(text("stdout"), "1\n3\n");
      assert.equal(text("stderr"), "2\n");
      assert.equal((await handle.wait()).exitCode, 0);
    });

    test("kill ends a command with SIGKILL", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["sleep", "30"], { reject: false });
      const listed = await agent.commands.list();
      assert.ok(listed.some((p) => p.pid === handle.pid && p.cmd === "sleep"));
      await handle.kill();
      const result = await handle.wait();
      assert.equal(result.signal, "SIGKILL");
      assert.equal(result.exitCode, -1);
    });

    test("timeoutMs kills the command and reports it as timed out", async () => {
      const agent = t.client(transport);
      const err = await agent.commands.run(["sleep", "30"], { timeoutMs: 200 }).catch((e: unknown) => e);
      assert.ok(err instanceof CommandExitError);
      assert.equal(err.timedOut, true);
      assert.equal(err.reason, "timeout");
      // The agent stops a timed-out group with SIGTERM first (SIGKILL only after a grace time).
      assert.equal(err.signal, "SIGTERM");
      assert.match(err.message, /timed out/);
    });

    test("connect re-attaches to a running command by pid", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["sh", "-c", "read line; echo got $line"], { stdin: true });
      const again = await agent.commands.connect(handle.pid);
      await handle.sendStdin("ping\n");
      const result = await again.wait();
      assert.equal(result.stdout, "got ping\n");
      await handle.wait();
    });

    test("disconnect stops the output stream but not the command", async () => {
      const agent = t.client(transport);
      const handle = await agent.commands.start(["sh", "-c", "read line; echo after $line"], { stdin: true });
      handle.disconnect();
      await assert.rejects(handle.wait());
      const again = await agent.commands.connect(handle.pid);
      await handle.sendStdin("reconnect\n");
      assert.equal((await again.wait()).stdout, "after reconnect\n");
    });
  });
}
