import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { deriveImage, engineSkipReason, eventually, TestSandboxes } from "./support/sandboxes.js";

const BASE = "tether-test/busybox";
const skip = await engineSkipReason([BASE]);
const t = new TestSandboxes();
let outDir: string;
/** An image whose CMD prints and exits at once. */
let printsAndExits: string;
/** An image whose Env would break the agent's node if it reached it. */
let hostileEnv: string;

before(async () => {
  if (skip) return;
  await t.setup();
  outDir = await mkdtemp(path.join(os.tmpdir(), "tether-host-out-"));
  printsAndExits = await deriveImage(t.docker, "tether-test/host-prints-and-exits", BASE, [
    'ENTRYPOINT ["/bin/sh", "-c"]',
    'CMD ["echo image-command-ran; echo to-stderr >&2; exit 3"]',
  ]);
  hostileEnv = await deriveImage(t.docker, "tether-test/host-hostile-env", BASE, [
    "ENV NODE_OPTIONS=--no-such-node-flag LD_PRELOAD=/no/such/lib.so LD_LIBRARY_PATH=/nowhere IMAGE_VAR=kept",
  ]);
});
after(async () => {
  await t.cleanup();
  if (outDir) await rm(outDir, { recursive: true, force: true });
});

describe("the image's own command", { skip }, () => {
  test("runs supervised; the sandbox stays up after it exits, its output and exit code are in the logs", async () => {
    const info = await t.create(printsAndExits);
    const logs = await eventually(async () => {
      const text = await t.logs(info.id);
      return /supervised command exited/.test(text) ? text : undefined;
    }, "the exit of the image's command in the logs");
    assert.match(logs, /image-command-ran/);
    assert.match(logs, /"exitCode":3/);
    const streams = { stdout: "", stderr: "" };
    for await (const chunk of t.sandboxes.logs(info.id)) streams[chunk.stream] += chunk.data;
    // stdout and stderr stay apart (the agent's own JSON log, which names the argv, is on stderr).
    assert.match(streams.stdout, /^image-command-ran$/m);
    assert.match(streams.stderr, /^to-stderr$/m);
    assert.doesNotMatch(streams.stdout, /to-stderr/);

    assert.equal((await t.sandboxes.get(info.id)).state, "running");
    const agent = await t.connect(info.id);
    assert.equal((await agent.commands.run(["echo", "still", "here"])).stdout, "still here\n");
  });

  test("is not run with runCommand: false; `command` overrides it", async () => {
    const none = await t.create(printsAndExits, { runCommand: false });
    const own = await t.create(printsAndExits, { command: ["echo", "overridden"] });
    const ownLogs = await eventually(async () => {
      const text = await t.logs(own.id);
      return /supervised command exited/.test(text) ? text : undefined;
    }, "the overriding command's exit");
    assert.match(ownLogs, /overridden/);
    assert.doesNotMatch(ownLogs, /image-command-ran/);
    assert.doesNotMatch(await t.logs(none.id), /supervised command|image-command-ran/);
  });

  test("gets SIGTERM when the sandbox stops", async () => {
    const script = [
      'trap "echo got-term > /out/marker; echo term-handled; exit 0" TERM',
      "echo waiting-for-term",
      "while :; do sleep 0.1; done",
    ].join("; ");
    const info = await t.create(BASE, {
      command: ["sh", "-c", script],
      mounts: [{ source: outDir, target: "/out" }],
    });
    await eventually(
      async () => ((await t.logs(info.id)).includes("waiting-for-term") ? true : undefined),
      "the command to start",
    );
    await t.sandboxes.stop(info.id, { timeoutSeconds: 20 });
    assert.equal(await readFile(path.join(outDir, "marker"), "utf8"), "got-term\n");
    const after = await t.sandboxes.get(info.id);
    assert.equal(after.state, "stopped");
    // The agent exited by itself (0), not killed by the engine (137).
    assert.equal(after.exitCode, 0);
    const logs = await t.logs(info.id);
    assert.match(logs, /term-handled/);
    assert.match(logs, /"exitCode":0,"status":"exit status 0","msg":"supervised command exited"/);
  });
});

describe("PID 1", { skip }, () => {
  test("is the engine's init, which reaps orphaned zombies", async () => {
    const info = await t.create(BASE);
    const agent = await t.connect(info.id);
    const init = await agent.commands.run(["cat", "/proc/1/cmdline"]);
    assert.match(init.stdout, /^\/sbin\/docker-init\0--\0\/\.tether\/lib\/ld-linux/);
    // Each shell leaves a child behind and exits at once: the child is reparented to PID 1.
    for (let i = 0; i < 5; i++) await agent.commands.run(["sh", "-c", "sleep 0.2 & exit 0"]);
    await agent.commands.run(["sh", "-c", "sleep 0 & exec sleep 0.3"]);
    const zombies = await eventually(async () => {
      const ps = await agent.commands.run([
        "sh",
        "-c",
        "for s in /proc/[0-9]*/stat; do cat $s 2>/dev/null; echo; done",
      ]);
      const states = ps.stdout
        .split("\n")
        .filter(Boolean)
        .map((line) => ({ line, state: line.slice(line.lastIndexOf(")") + 2).split(" ")[0] }));
      const sleeping = states.filter((s) => s.line.includes("(sleep)") && s.state !== "Z");
      if (sleeping.length > 0) return undefined;
      return states.filter((s) => s.state === "Z").map((s) => s.line);
    }, "the orphans to finish");
    assert.deepEqual(zombies, []);
  });
});

describe("the image's environment", { skip }, () => {
  test("reaches commands, while NODE_OPTIONS and LD_* go to the children, not the agent", async () => {
    const info = await t.create(hostileEnv, { env: { USER_VAR: "from-spec" } });
    const agent = await t.connect(info.id);
    const env = await agent.commands.run(["env"]);
    const vars = Object.fromEntries(
      env.stdout
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    assert.equal(vars.PATH, "/bin");
    assert.equal(vars.IMAGE_VAR, "kept");
    assert.equal(vars.USER_VAR, "from-spec");
    assert.equal(vars.NODE_OPTIONS, "--no-such-node-flag");
    assert.equal(vars.LD_PRELOAD, "/no/such/lib.so");
    assert.equal(vars.LD_LIBRARY_PATH, "/nowhere");
    assert.deepEqual(
      Object.keys(vars).filter((k) => k.startsWith("TETHER")),
      [],
    );
    // Nothing of the token anywhere the sandbox's processes could read it.
    const token = (await t.sandboxes.get(info.id)).endpoint?.accessToken as string;
    assert.ok(token);
    const visible = await agent.commands.run([
      "sh",
      "-c",
      "cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null; ls -a /run/tether; cat /run/tether/* 2>/dev/null; true",
    ]);
    assert.ok(visible.stdout.includes("tetherd.js"), "the scan should see the agent's command line");
    assert.ok(!visible.stdout.includes(token), "the token is readable inside the sandbox");
    assert.doesNotMatch(visible.stdout, /^token$/m);
    const inspect = await t.docker.getContainer(info.backendId).inspect();
    assert.doesNotMatch(JSON.stringify(inspect), new RegExp(token));
  });
});
