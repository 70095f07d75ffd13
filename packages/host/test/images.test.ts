import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { engineSkipReason, TestSandboxes } from "./support/sandboxes.js";

interface TestImage {
  image: string;
  /** A program of the image and what it prints. */
  hello: { argv: string[]; stdout: string };
}

const IMAGES: TestImage[] = [
  { image: "tether-test/busybox", hello: { argv: ["echo", "hello", "busybox"], stdout: "hello busybox\n" } },
  { image: "tether-test/musl", hello: { argv: ["/bin/hello-musl", "musl"], stdout: "hello musl\n" } },
  { image: "tether-test/debian", hello: { argv: ["echo", "hello", "debian"], stdout: "hello debian\n" } },
  { image: "tether-test/noshell", hello: { argv: ["/hello", "noshell"], stdout: "hello noshell\n" } },
];

const skip = await engineSkipReason(IMAGES.map((i) => i.image));
const t = new TestSandboxes();
before(async () => {
  if (!skip) await t.setup();
});
after(() => t.cleanup());

if (skip) test("sandboxes from each test image", { skip }, () => {});
for (const spec of IMAGES) {
  describe(`a sandbox from ${spec.image}`, { skip }, () => {
    test("runs a program of the image and round-trips a file through the agent", async () => {
      const info = await t.create(spec.image);
      assert.equal(info.state, "running");
      assert.match(info.id, /^[0-9a-f]{12}$/);
      assert.equal(info.name, `tether-${info.id}`);
      assert.equal(info.image, spec.image);

      const agent = await t.connect(info.id);
      const result = await agent.commands.run(spec.hello.argv);
      assert.deepEqual(
        { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode },
        { stdout: spec.hello.stdout, stderr: "", exitCode: 0 },
      );
      const bytes = randomBytes(300 * 1024 + 3);
      await agent.files.write("/tmp/round-trip.bin", bytes);
      const back = await agent.files.read("/tmp/round-trip.bin", { format: "bytes" });
      assert.ok(Buffer.from(back).equals(bytes), "the file read back differs");

      await t.sandboxes.remove(info.id);
      assert.deepEqual(await t.containers(), []);
      assert.deepEqual(await t.sandboxDirs(), []);
    });
  });
}
