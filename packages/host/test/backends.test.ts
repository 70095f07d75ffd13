import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Agent } from "@tether/sdk";
import {
  InvalidSandboxSpecError,
  LIFETIME_STATES,
  type LogLine,
  logLines,
  processIdentity,
  Sandboxes,
  type SandboxInfo,
  SandboxNotRunningError,
} from "../src/index.js";
import { bwrapSkipReason, scratchHome } from "./support/backends.js";
import { HostileAgent } from "./support/hostile-agent.js";
import { engineSkipReason, eventually, TEST_BUNDLE } from "./support/sandboxes.js";

const BUSYBOX = "tether-test/busybox";
const dockerSkip = await engineSkipReason([BUSYBOX]);
const bwrapSkip = await bwrapSkipReason();

/** The same tests for every backend: how to make a sandbox there, and what it is. */
const BACKENDS = [
  { kind: "docker", image: BUSYBOX, skip: dockerSkip, isolation: "container" },
  { kind: "bwrap", image: undefined, skip: bwrapSkip, isolation: "namespaces (bubblewrap)" },
  { kind: "local", image: undefined, skip: undefined, isolation: "none" },
] as const;

let scratch: Awaited<ReturnType<typeof scratchHome>>;
let sandboxes: Sandboxes;
const agents: Agent[] = [];
before(async () => {
  scratch = await scratchHome();
  sandboxes = new Sandboxes({ home: scratch.home, docker: TEST_BUNDLE });
});
after(async () => {
  await new Promise((r) => setTimeout(r, 20));
  for (const agent of agents) agent.close();
  for (const s of await sandboxes.list({ states: LIFETIME_STATES })) {
    await sandboxes.remove(s.id).catch(() => {});
  }
  sandboxes.close();
  await scratch.remove();
});

async function connect(id: string): Promise<Agent> {
  const agent = await sandboxes.connect(id);
  agents.push(agent);
  return agent;
}

for (const backend of BACKENDS) {
  describe(`backend ${backend.kind}`, { skip: backend.skip }, () => {
    let info: SandboxInfo;
    before(async () => {
      info = await sandboxes.create(backend.image, { backend: backend.kind, labels: { suite: "backends" } });
    });

    test("create: running, recorded, with the backend's isolation", async () => {
      assert.equal(info.state, "running");
      assert.equal(info.backend, backend.kind);
      assert.equal(info.isolation, backend.isolation);
      const record = sandboxes.registry?.get(info.id);
      assert.equal(record?.state, "running");
      assert.equal(record?.backend, backend.kind);
      assert.deepEqual(record?.labels, { suite: "backends" });
    });

    test("processes: output, exit codes, stdin, env", async () => {
      const agent = await connect(info.id);
      const r = await agent.commands.run(["sh", "-c", "echo out; echo err >&2; exit 3"], { reject: false });
      assert.equal(r.stdout, "out\n");
      assert.equal(r.stderr, "err\n");
      assert.equal(r.exitCode, 3);
      const env = await agent.commands.run(["sh", "-c", "echo $GREETING"], { envs: { GREETING: "hello" } });
      assert.equal(env.stdout, "hello\n");
      const cat = await agent.commands.run(["cat"], { stdin: "piped in" });
      assert.equal(cat.stdout, "piped in");
    });

    test("files: write, read back, list, and visible to processes", async () => {
      const agent = await connect(info.id);
      const dir = backend.kind === "docker" ? "/tmp" : (await agent.commands.run(["pwd"])).stdout.trim();
      const file = `${dir}/hello.txt`;
      await agent.files.write(file, "file body\n");
      assert.equal(await agent.files.read(file), "file body\n");
      assert.equal((await agent.commands.run(["cat", file])).stdout, "file body\n");
      const entries = await agent.files.list(dir);
      assert.ok(entries.some((e) => e.name === "hello.txt"));
    });

    test("stop and start: the same sandbox answers again", async () => {
      await sandboxes.stop(info.id, { timeoutSeconds: 5 });
      assert.equal((await sandboxes.get(info.id)).state, "stopped");
      await assert.rejects(sandboxes.connect(info.id), SandboxNotRunningError);
      const started = await sandboxes.start(info.id);
      assert.equal(started.state, "running");
      const agent = await connect(info.id);
      assert.equal((await agent.commands.run(["echo", "back"])).stdout, "back\n");
    });

    test("a socket put over the agent's own after a restart is never what the host reaches", async () => {
      // What the sandbox sees read-write at /run/tether (the agent's directory for local).
      const runDir = path.join(scratch.home, "sandboxes", info.id, "run", "sandbox");
      const hostile = new HostileAgent(path.join(runDir, "impostor.sock"));
      await hostile.listen();
      try {
        await rename(hostile.socket, path.join(runDir, "agent.sock"));
        const agent = await connect(info.id);
        assert.equal((await agent.commands.run(["echo", "real"])).stdout, "real\n");
        assert.deepEqual([...hostile.tokensSeen], [], "the impostor was never sent the token");
      } finally {
        await hostile.close();
      }
    });

    test("pause freezes, unpause resumes", async () => {
      const agent = await connect(info.id);
      const dir = backend.kind === "docker" ? "/tmp" : (await agent.commands.run(["pwd"])).stdout.trim();
      const counter = await agent.commands.start([
        "sh",
        "-c",
        `i=0; while :; do i=$((i+1)); echo $i > ${dir}/count; sleep 0.05; done`,
      ]);
      await eventually(
        async () => ((await agent.files.read(`${dir}/count`).catch(() => "")) ? true : undefined),
        "a count",
      );
      await sandboxes.pause(info.id);
      assert.equal((await sandboxes.get(info.id)).state, "paused");
      assert.equal(sandboxes.registry?.get(info.id)?.state, "paused");
      await sandboxes.unpause(info.id);
      const first = Number(await agent.files.read(`${dir}/count`));
      await eventually(
        async () => (Number(await agent.files.read(`${dir}/count`)) > first ? true : undefined),
        "the counter to move again",
      );
      await counter.kill();
    });

    test("logs: the supervised command's output, stdout and stderr apart", async () => {
      const made = await sandboxes.create(backend.image, {
        backend: backend.kind,
        command: ["sh", "-c", "echo out-line; echo err-line >&2; sleep 600"],
      });
      const seen = await eventually(async () => {
        const chunks: string[] = [];
        for await (const c of sandboxes.logs(made.id)) chunks.push(`${c.stream}:${c.data}`);
        // The two streams are read apart: wait for both lines, not one.
        const both = chunks.some((s) => s.includes("err-line")) && chunks.some((s) => s.includes("out-line"));
        return both ? chunks : undefined;
      }, "the command's output");
      assert.ok(seen.some((s) => s.startsWith("stdout:") && s.includes("out-line")));
      assert.ok(seen.some((s) => s.startsWith("stderr:") && s.includes("err-line")));
      const tail = [];
      for await (const c of sandboxes.logs(made.id, { tail: 1 })) tail.push(c);
      assert.equal(tail.length, 1);
      // With timestamps each line has when it was recorded: after the sandbox began, not after now.
      const lines: LogLine[] = [];
      for await (const line of logLines(sandboxes.logs(made.id, { timestamps: true }))) lines.push(line);
      const out = lines.find((l) => l.text === "out-line");
      assert.equal(out?.stream, "stdout");
      assert.ok(out?.at, "out-line has its time");
      assert.ok(out.at.getTime() >= made.createdAt.getTime() - 1000, `${out.at.toISOString()} before the sandbox`);
      assert.ok(out.at.getTime() <= Date.now());
      assert.ok(lines.some((l) => l.stream === "stderr" && l.text === "err-line" && l.at));
      // since: nothing was written after a time still to come.
      const later: LogLine[] = [];
      for await (const line of logLines(
        sandboxes.logs(made.id, { timestamps: true, since: new Date(Date.now() + 5000) }),
      )) {
        later.push(line);
      }
      assert.deepEqual(later, []);
      await sandboxes.remove(made.id);
      assert.equal(sandboxes.registry?.get(made.id), undefined);
    });

    test("remove: gone from the backend, the registry and the host", async () => {
      const made = await sandboxes.create(backend.image, { backend: backend.kind });
      await sandboxes.remove(made.id);
      assert.ok(!(await sandboxes.list()).some((s) => s.id === made.id));
      assert.equal(await stat(path.join(scratch.home, "sandboxes", made.id)).catch(() => undefined), undefined);
    });
  });
}

describe("process backends", () => {
  test("local: no isolation, its own work directory as the default workdir", async () => {
    const info = await sandboxes.create(undefined, { backend: "local" });
    const agent = await connect(info.id);
    const pwd = (await agent.commands.run(["pwd"])).stdout.trim();
    assert.equal(pwd, path.join(scratch.home, "sandboxes", info.id, "work"));
    // It sees the host as it is: the same pid namespace.
    const pids = (await agent.commands.run(["sh", "-c", "ls /proc | grep -c '^[0-9]'"])).stdout;
    assert.ok(Number(pids) > 5);
    const pidFile = JSON.parse(
      await readFile(path.join(scratch.home, "sandboxes", info.id, "supervisor.json"), "utf8"),
    );
    assert.equal(typeof pidFile.pid, "number");
    await sandboxes.remove(info.id);
  });

  test("without a registry, remove finds the sandbox's backend and leaves no process behind", async () => {
    const bare = new Sandboxes({ home: scratch.home, registry: false, docker: TEST_BUNDLE });
    const info = await bare.create(undefined, { backend: "local" });
    const supervisor = JSON.parse(
      await readFile(path.join(scratch.home, "sandboxes", info.id, "supervisor.json"), "utf8"),
    );
    assert.equal((await bare.get(info.id)).state, "running");
    await bare.remove(info.id);
    await eventually(
      async () => (!processIdentity(supervisor.pid) && !processIdentity(supervisor.agentPid) ? true : undefined),
      "the supervisor and agent to be gone",
    );
    assert.equal(await stat(path.join(scratch.home, "sandboxes", info.id)).catch(() => undefined), undefined);
  });

  test("local refuses what it cannot honour, and nothing is recorded", async () => {
    await assert.rejects(sandboxes.create(undefined, { backend: "local", memory: "64m", cpus: 1 }), (err: Error) => {
      assert.ok(err instanceof InvalidSandboxSpecError);
      assert.match(err.message, /cpus, memory/);
      return true;
    });
    await assert.rejects(sandboxes.create(BUSYBOX, { backend: "local" }), /image needs a container engine/);
  });

  test("bwrap: read-only host root, private /tmp and pids, no network, TETHER_HOME hidden", {
    skip: bwrapSkip,
  }, async () => {
    const info = await sandboxes.create(undefined, { backend: "bwrap" });
    const agent = await connect(info.id);
    const run = async (script: string) => (await agent.commands.run(["sh", "-c", script], { reject: false })).stdout;
    assert.match(await run("touch /etc/tether-x 2>&1 || echo refused"), /refused|Read-only/);
    const marker = path.join(os.tmpdir(), `tether-bwrap-marker-${process.pid}`);
    await writeFile(marker, "host");
    assert.equal(await run(`cat ${marker} 2>/dev/null || echo private`), "private\n");
    await rm(marker);
    assert.ok(Number(await run("ls /proc | grep -c '^[0-9]'")) < 10);
    assert.equal(await run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"), "lo\n");
    assert.equal(await run(`ls ${scratch.home}/sandboxes | wc -l`), "1\n");
    assert.equal(await run(`test -e ${scratch.home}/tether.db && echo visible || echo hidden`), "hidden\n");
    assert.equal(await run("grep CapEff /proc/self/status | tr -d '\\t'"), "CapEff:0000000000000000\n");
    await sandboxes.remove(info.id);
  });

  test("bwrap refuses what it cannot honour", { skip: bwrapSkip }, async () => {
    await assert.rejects(sandboxes.create(undefined, { backend: "bwrap", pidsLimit: 10 }), /pidsLimit/);
  });
});

describe("a docker sandbox's run/ tmpfs", {
  skip: dockerSkip ?? (process.geteuid?.() !== 0 && "only root mounts it"),
}, () => {
  test("gone after a reboot, it is mounted and made again at the next start", async () => {
    const info = await sandboxes.create(BUSYBOX, { backend: "docker" });
    const run = path.join(scratch.home, "sandboxes", info.id, "run");
    const sandboxDir = path.dirname(run);
    assert.notEqual((await stat(run)).dev, (await stat(sandboxDir)).dev, "run/ is a filesystem of its own");
    await sandboxes.stop(info.id, { timeoutSeconds: 5 });
    // What a reboot does: the tmpfs and all in it are gone, an empty run/ is left.
    execFileSync("umount", [run]);
    assert.equal((await stat(run)).dev, (await stat(sandboxDir)).dev);
    assert.equal((await sandboxes.start(info.id)).state, "running");
    assert.notEqual((await stat(run)).dev, (await stat(sandboxDir)).dev, "mounted again");
    const agent = await connect(info.id);
    assert.equal((await agent.commands.run(["echo", "back"])).stdout, "back\n");
    await sandboxes.remove(info.id);
    await assert.rejects(stat(sandboxDir), { code: "ENOENT" });
  });
});
