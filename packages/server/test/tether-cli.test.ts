import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { BUSYBOX, dockerSkipReason, TestServer } from "./support/server.js";

// The CLI with --server / TETHER_SERVER: its commands go through tether serve (our SDK),
// never this machine's registry (its TETHER_HOME is an empty scratch directory).
const TETHER = fileURLToPath(new URL("../../../cli/bin/tether.js", import.meta.url));
const skip = await dockerSkipReason([BUSYBOX]);
const t = new TestServer();
let key: string;
let cliHome: string;

before(async () => {
  if (skip) return;
  await t.start();
  t.server.templates.put("busybox", BUSYBOX);
  key = t.server.keys.create({ team: "alpha" }).key;
  cliHome = await mkdtemp(path.join(os.tmpdir(), "tether-cli-remote-"));
});
after(async () => {
  if (skip) return;
  await t.close();
  await rm(cliHome, { recursive: true, force: true });
});

function tether(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TETHER, ...args], {
      env: { ...process.env, TETHER_HOME: cliHome, TETHER_SERVER: t.url, TETHER_API_KEY: key, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function listed(
  ...args: string[]
): Promise<{ id: string; image: string; state: string; labels: Record<string, string> }[]> {
  const ls = await tether(["ls", "--json", ...args]);
  assert.equal(ls.code, 0, ls.stderr);
  return JSON.parse(ls.stdout);
}

test("create, ls, exec, cp, pause, unpause, rm through the server; local-only commands say so", { skip }, async () => {
  const created = await tether(["create", "busybox", "--label", "purpose=cli", "-e", "GREETING=hi"]);
  assert.equal(created.code, 0, created.stderr);
  const id = created.stdout.trim();
  assert.match(id, /^[a-z0-9]+$/);
  assert.deepEqual(
    (await listed("--label", "purpose=cli")).map((s) => [s.id, s.image, s.state, s.labels]),
    [[id, "busybox", "running", { purpose: "cli" }]],
  );
  // The flag, with only the key in the environment.
  const exec = await tether(["--server", t.url, "exec", id, "--", "sh", "-c", "echo $GREETING; exit 3"], {
    TETHER_SERVER: "",
  });
  assert.equal(exec.stdout, "hi\n");
  assert.equal(exec.code, 3, exec.stderr);

  // cp both ways, streamed through the agent's file API (nothing is shared with a remote sandbox).
  const local = path.join(cliHome, "in.txt");
  await writeFile(local, "copied through the server");
  const cpIn = await tether(["cp", local, `${id}:/tmp/in.txt`]);
  assert.equal(cpIn.code, 0, cpIn.stderr);
  const cpOut = await tether(["cp", `${id}:/tmp/in.txt`, path.join(cliHome, "out.txt")]);
  assert.equal(cpOut.code, 0, cpOut.stderr);
  assert.equal(await readFile(path.join(cliHome, "out.txt"), "utf8"), "copied through the server");

  assert.equal((await tether(["pause", id])).code, 0);
  assert.deepEqual(
    (await listed("--state", "paused")).map((s) => s.id),
    [id],
  );
  assert.equal((await tether(["unpause", id])).code, 0);
  assert.equal((await listed())[0].state, "running");

  const logs = await tether(["logs", id]);
  assert.notEqual(logs.code, 0);
  assert.match(logs.stderr, /tether logs works on this machine's sandboxes only, not through --server/);
  const sized = await tether(["create", "busybox", "--memory", "64m"]);
  assert.notEqual(sized.code, 0);
  assert.match(sized.stderr, /memory cannot be set through a server/);

  const refused = await tether(["rm", id]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /is running: stop it first, or use rm -f/);
  assert.equal((await tether(["rm", "-f", id])).code, 0);
  assert.deepEqual(await listed(), []);
  const wrongKey = await tether(["ls"], { TETHER_API_KEY: "tether_wrong" });
  assert.notEqual(wrongKey.code, 0);
  assert.match(wrongKey.stderr, /401/);
});
