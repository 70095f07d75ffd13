import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";

let t: TestAgent;
before(async () => {
  t = await startTestAgent();
});
after(() => t.close());

/** Resolves once the collected output matches, so tests wait for the terminal, not a clock. */
function outputCollector() {
  let text = "";
  let waiter: { pattern: RegExp; resolve: () => void } | undefined;
  return {
    onData(data: Uint8Array) {
      text += Buffer.from(data).toString();
      if (waiter?.pattern.test(text)) waiter.resolve();
    },
    get text() {
      return text;
    },
    until(pattern: RegExp): Promise<void> {
      if (pattern.test(text)) return Promise.resolve();
      return new Promise((resolve) => {
        waiter = { pattern, resolve };
      });
    },
  };
}

for (const transport of TRANSPORTS) {
  describe(`pty over ${transport}`, () => {
    test("a shell on a terminal: input, output, resize, exit", async () => {
      const agent = t.client(transport);
      const out = outputCollector();
      const pty = await agent.pty.create({ cols: 80, rows: 24, argv: ["/bin/sh"], onData: out.onData });
      assert.ok(pty.pid > 0);
      await pty.sendInput("stty size; tty\n");
      await out.until(/24 80\r?\n\/dev\/pts\/\d+/);
      await pty.resize({ cols: 100, rows: 40 });
      await pty.sendInput("stty size\n");
      await out.until(/40 100/);
      await pty.sendInput("exit 5\n");
      const exit = await pty.wait();
      assert.equal(exit.exitCode, 5);
    });

    test("kill ends the terminal's process", async () => {
      const agent = t.client(transport);
      const pty = await agent.pty.create({ cols: 80, rows: 24, argv: ["sleep", "30"], onData: () => {} });
      await pty.kill();
      const exit = await pty.wait();
      assert.equal(exit.signal, "SIGKILL");
    });
  });
}

test("a slow reader gets every byte of a terminal whose child wrote 10 MiB and exited", async () => {
  const agent = t.client("unix");
  // -opost: the terminal passes bytes through unchanged (no \n -> \r\n), so they can be compared.
  const count = 1_500_000;
  const expected = `${Array.from({ length: count }, (_, i) => i + 1).join("\n")}\n`;
  assert.ok(expected.length > 10 << 20);
  const chunks: Buffer[] = [];
  let owed = 0;
  const pty = await agent.pty.create({
    cols: 80,
    rows: 24,
    argv: ["/bin/sh", "-c", `stty -opost -echo; seq 1 ${count}; exit 7`],
    // About 1 MiB/s: each chunk is paid for with the time reading it would take at that rate.
    onData: async (data) => {
      chunks.push(Buffer.from(data));
      owed += data.length / (1 << 20);
      if (owed >= 0.05) {
        await new Promise((resolve) => setTimeout(resolve, owed * 1000));
        owed = 0;
      }
    },
  });
  const exit = await pty.wait();
  assert.equal(exit.exitCode, 7);
  const got = Buffer.concat(chunks).toString();
  assert.equal(
    got.length,
    expected.length,
    `got ${got.length} of ${expected.length} bytes, ending ${JSON.stringify(got.slice(-40))}`,
  );
  assert.ok(got === expected, "the bytes differ");
});
