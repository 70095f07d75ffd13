import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  Agent,
  AuthenticationError,
  CommandExitError,
  RateLimitError,
  Sandbox,
  SandboxNotFoundError,
  Tether,
  TetherError,
} from "@tether/sdk";
import { BUSYBOX, DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

// Our own SDK against tether serve: the control plane over the API, the agent through the
// proxy on the same port (HTTP/2 with prior knowledge), with one key, no e2b package.
const skip = await dockerSkipReason([DEBIAN, BUSYBOX]);
const t = new TestServer();
let alphaKey: string;
let alpha: Tether;
let beta: Tether;

before(async () => {
  if (skip) return;
  await t.start({ limits: { maxSandboxes: 3 } });
  t.server.templates.put("debian", DEBIAN);
  t.server.templates.put("busybox", BUSYBOX);
  alphaKey = t.server.keys.create({ team: "alpha" }).key;
  alpha = new Tether({ apiUrl: t.url, apiKey: alphaKey });
  beta = new Tether({ apiUrl: t.url, apiKey: t.server.keys.create({ team: "beta" }).key });
});
after(async () => {
  if (!skip) await t.close();
});

test("create with metadata and envs, run (stdin streamed too), files, getInfo, setTimeout, list, kill", {
  skip,
}, async () => {
  const sandbox = await Sandbox.create({
    tether: alpha,
    template: "debian",
    metadata: { purpose: "sdk" },
    envs: { GREETING: "hello" },
    timeoutMs: 120_000,
  });
  try {
    assert.match(sandbox.sandboxId, /^[a-z0-9]+$/);
    assert.equal((await sandbox.commands.run("echo $GREETING from $(id -un)")).stdout, "hello from root\n");
    const failed = await sandbox.commands.run("exit 7").catch((e: unknown) => e);
    assert.ok(failed instanceof CommandExitError);
    assert.equal(failed.exitCode, 7);
    // Stdin is a client stream, on the SDK's second connection: through the proxy too.
    assert.equal(
      (await sandbox.commands.run("cat", { stdin: "piped through the proxy" })).stdout,
      "piped through the proxy",
    );
    await sandbox.files.write("/tmp/note.txt", "kept");
    assert.equal(await sandbox.files.read("/tmp/note.txt"), "kept");
    assert.deepEqual(
      (await sandbox.files.list("/tmp")).map((e) => e.name).filter((n) => n === "note.txt"),
      ["note.txt"],
    );

    const info = await sandbox.getInfo();
    assert.equal(info.sandboxId, sandbox.sandboxId);
    assert.equal(info.templateId, "debian");
    assert.equal(info.state, "running");
    assert.deepEqual(info.metadata, { purpose: "sdk" });
    await sandbox.setTimeout(3600_000);
    assert.ok((await sandbox.getInfo()).endAt.getTime() > info.endAt.getTime());

    const listed = await Sandbox.list({ tether: alpha, metadata: { purpose: "sdk" } });
    assert.deepEqual(
      listed.sandboxes.map((s) => s.sandboxId),
      [sandbox.sandboxId],
    );
    assert.equal(listed.nextToken, undefined);
    assert.deepEqual((await Sandbox.list({ tether: alpha, metadata: { purpose: "other" } })).sandboxes, []);
  } finally {
    await sandbox.kill();
  }
  await assert.rejects(Sandbox.getInfo(sandbox.sandboxId, { tether: alpha }), SandboxNotFoundError);
  await assert.rejects(Sandbox.kill(sandbox.sandboxId, { tether: alpha }), SandboxNotFoundError);
});

test("a tunnel to a port inside the sandbox, through the proxy", { skip }, async () => {
  const sandbox = await Sandbox.create({ tether: alpha, template: "busybox" });
  try {
    await sandbox.commands.start("nc -ll -p 7000 -e cat");
    let answer = "";
    for (let attempt = 0; attempt < 50 && answer === ""; attempt++) {
      answer = await sandbox
        .tunnel(7000)
        .then(
          (stream) =>
            new Promise<string>((resolve, reject) => {
              stream.once("data", (d: Buffer) => {
                stream.destroy();
                resolve(d.toString());
              });
              stream.once("error", reject);
              stream.write("echoed");
            }),
        )
        .catch(() => new Promise<string>((r) => setTimeout(() => r(""), 100)));
    }
    assert.equal(answer, "echoed");
  } finally {
    await sandbox.kill();
  }
});

test("pause keeps files; connect resumes; list by state", { skip }, async () => {
  const sandbox = await Sandbox.create({ tether: alpha, template: "busybox", metadata: { purpose: "pause" } });
  try {
    await sandbox.files.write("/tmp/kept", "still here");
    await sandbox.pause();
    const paused = await Sandbox.list({ tether: alpha, metadata: { purpose: "pause" }, state: ["paused"] });
    assert.deepEqual(
      paused.sandboxes.map((s) => [s.sandboxId, s.state]),
      [[sandbox.sandboxId, "paused"]],
    );
    const again = await Sandbox.connect(sandbox.sandboxId, { tether: alpha });
    assert.equal((await again.getInfo()).state, "running");
    assert.equal(await again.files.read("/tmp/kept"), "still here");
    again.close();
  } finally {
    await sandbox.kill();
  }
});

test("teams: another team's key sees none of it; a wrong key is refused; the limit is a RateLimitError", {
  skip,
}, async () => {
  const sandbox = await Sandbox.create({ tether: alpha, template: "busybox" });
  try {
    assert.deepEqual((await Sandbox.list({ tether: beta })).sandboxes, []);
    await assert.rejects(Sandbox.connect(sandbox.sandboxId, { tether: beta }), SandboxNotFoundError);
    await assert.rejects(Sandbox.getInfo(sandbox.sandboxId, { tether: beta }), SandboxNotFoundError);
    await assert.rejects(Sandbox.kill(sandbox.sandboxId, { tether: beta }), SandboxNotFoundError);
    assert.equal((await sandbox.getInfo()).state, "running");
    await assert.rejects(Sandbox.list({ apiUrl: t.url, apiKey: "tether_wrong" }), AuthenticationError);

    // maxSandboxes is 3: a fourth waits (up to rateLimitRetries), and without retries fails typed.
    const more = await Promise.all([1, 2].map(() => Sandbox.create({ tether: alpha, template: "busybox" })));
    const impatient = new Tether({ apiUrl: t.url, apiKey: alphaKey, rateLimitRetries: 0 });
    const refused = await Sandbox.create({ tether: impatient, template: "busybox" }).catch((e: unknown) => e);
    assert.ok(refused instanceof RateLimitError, String(refused));
    assert.ok(refused instanceof TetherError);
    assert.ok(refused.retryAfterMs >= 1000);
    await Promise.all(more.map((s) => s.kill()));
  } finally {
    await sandbox.kill();
  }
});

test("the agent's port without the token is refused through the proxy", { skip }, async () => {
  const sandbox = await Sandbox.create({ tether: alpha, template: "busybox" });
  try {
    const stranger = new Agent({
      url: t.url,
      headers: { "e2b-sandbox-id": sandbox.sandboxId, "e2b-sandbox-port": "49983" },
    });
    await assert.rejects(stranger.commands.run("true"), AuthenticationError);
    stranger.close();
  } finally {
    await sandbox.kill();
  }
});
