import assert from "node:assert/strict";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { NotFoundError } from "../src/index.js";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";

let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: "files-token" });
});
after(() => t.close());

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

for (const transport of TRANSPORTS) {
  describe(`files over ${transport}`, () => {
    const at = (name: string) => path.join(t.dir, transport, name);

    test("write a string and read it back as text", async () => {
      const agent = t.client(transport);
      const info = await agent.files.write(at("deep/er/hello.txt"), "héllo\n");
      assert.equal(info.path, at("deep/er/hello.txt"));
      assert.equal(await agent.files.read(at("deep/er/hello.txt")), "héllo\n");
    });

    test("write bytes and read them back as bytes", async () => {
      const agent = t.client(transport);
      const bytes = new Uint8Array(256).map((_, i) => i);
      await agent.files.write(at("bytes.bin"), bytes);
      const back = await agent.files.read(at("bytes.bin"), { format: "bytes" });
      assert.deepEqual(Buffer.from(back), Buffer.from(bytes));
    });

    test("write from a stream and read as a stream (8 MiB)", async () => {
      const agent = t.client(transport);
      const piece = Buffer.alloc(1 << 20, 7);
      const source = Readable.from(
        (function* () {
          for (let i = 0; i < 8; i++) yield piece;
        })(),
      );
      await agent.files.write(at("big.bin"), source);
      const stream = await agent.files.read(at("big.bin"), { format: "stream" });
      const back = await collect(stream);
      assert.equal(back.length, 8 << 20);
      assert.ok(back.every((b) => b === 7));
    });

    test("makeDir, list, stat, exists, rename, remove", async () => {
      const agent = t.client(transport);
      assert.equal(await agent.files.makeDir(at("tree/sub")), true);
      assert.equal(await agent.files.makeDir(at("tree/sub")), false);
      await agent.files.write(at("tree/a.txt"), "a");
      const names = (await agent.files.list(at("tree"))).map((e) => `${e.name}:${e.type}`).sort();
      assert.deepEqual(names, ["a.txt:file", "sub:dir"]);
      const info = await agent.files.stat(at("tree/a.txt"));
      assert.equal(info.size, 1);
      assert.equal(info.type, "file");
      const moved = await agent.files.rename(at("tree/a.txt"), at("tree/b.txt"));
      assert.equal(moved.name, "b.txt");
      assert.equal(await agent.files.exists(at("tree/a.txt")), false);
      assert.equal(await agent.files.exists(at("tree/b.txt")), true);
      await agent.files.remove(at("tree"));
      assert.equal(await agent.files.exists(at("tree")), false);
    });

    test("write with a mode sets the file's permission bits, also over an old file", async () => {
      const agent = t.client(transport);
      await agent.files.write(at("mode.sh"), "#!/bin/sh\n", { mode: 0o750 });
      assert.equal((await agent.files.stat(at("mode.sh"))).mode & 0o7777, 0o750);
      await agent.files.write(at("mode.sh"), "#!/bin/sh\n", { mode: 0o600 });
      assert.equal((await agent.files.stat(at("mode.sh"))).mode & 0o7777, 0o600);
      await assert.rejects(agent.files.write(at("bad-mode"), "x", { mode: 0o17777 }), /not permission bits/);
    });

    test("close() right after a read or write raises nothing uncaught", async () => {
      const uncaught: unknown[] = [];
      const record = (err: unknown) => uncaught.push(err);
      process.on("uncaughtException", record);
      try {
        for (let i = 0; i < 20; i++) {
          const agent = t.client(transport);
          await agent.files.write(at(`close-${i}.txt`), "x".repeat(1000));
          agent.close();
          const reader = t.client(transport);
          assert.equal((await reader.files.read(at(`close-${i}.txt`))).length, 1000);
          reader.close();
        }
        // The streams' close events come a moment after their bodies end.
        await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        process.off("uncaughtException", record);
      }
      assert.deepEqual(uncaught, []);
    });

    test("missing paths give NotFoundError naming the path", async () => {
      const agent = t.client(transport);
      const missing = at("nope/missing.txt");
      await assert.rejects(agent.files.read(missing), (err: unknown) => {
        assert.ok(err instanceof NotFoundError);
        assert.match(err.message, /read .*missing\.txt/);
        return true;
      });
      await assert.rejects(agent.files.stat(missing), NotFoundError);
    });
  });
}
