import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";

// Node's HTTP/2 stops reading a socket while its own write to it is pending, so bulk
// pushed both ways on one connection used to hang for good (a few hundred MiB each way
// did it every time). These tests fail by timing out when that comes back.
const BYTES = 256 << 20;
const CHUNK = Buffer.alloc(1 << 20, "t");

let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: "sdk-bulk-token" });
});
after(() => t.close());

/** BYTES of a repeated chunk, produced on demand. */
function source(): Readable {
  let left = BYTES;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      left -= CHUNK.length;
      this.push(CHUNK);
    },
  });
}

const expectedHash = (() => {
  const hash = createHash("sha256");
  for (let i = 0; i < BYTES / CHUNK.length; i++) hash.update(CHUNK);
  return hash.digest("hex");
})();

for (const transport of TRANSPORTS) {
  describe(`bulk both ways over ${transport}`, () => {
    test("an upload beside a command's heavy output on one client", { timeout: 120_000 }, async () => {
      const agent = t.client(transport);
      const target = path.join(t.dir, `upload-${transport}.bin`);
      let output = 0;
      await Promise.all([
        agent.files.write(target, source()),
        agent.commands.run(["sh", "-c", `head -c ${BYTES} /dev/zero`], {
          keepOutput: false,
          onStdout: (data) => {
            output += data.length;
          },
        }),
      ]);
      assert.equal(output, BYTES);
      assert.equal(createHash("sha256").update(readFileSync(target)).digest("hex"), expectedHash);
      rmSync(target);
    });

    test("streamed stdin into cat while its output streams back", { timeout: 120_000 }, async () => {
      const agent = t.client(transport);
      const hash = createHash("sha256");
      let output = 0;
      const handle = await agent.commands.start(["cat"], {
        stdin: true,
        keepOutput: false,
        onStdout: (data) => {
          output += data.length;
          hash.update(data);
        },
      });
      await handle.writeStdin(source());
      await handle.closeStdin();
      await handle.wait();
      assert.equal(output, BYTES);
      assert.equal(hash.digest("hex"), expectedHash);
    });
  });
}
