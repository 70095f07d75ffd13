import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";

const TETHERD = new URL("../../bin/tetherd.js", import.meta.url).pathname;

interface Tetherd {
  proc: ChildProcess;
  dir: string;
  socket: string;
  /** Everything it printed on stdout and stderr so far. */
  output(): string;
  exited: Promise<number | null>;
}

const started: Tetherd[] = [];
after(() => {
  for (const t of started) {
    if (t.proc.exitCode === null && t.proc.signalCode === null) t.proc.kill("SIGKILL");
    rmSync(t.dir, { recursive: true, force: true });
  }
});

/** Starts the real tetherd bin on a unix socket in a scratch dir and waits for health. */
async function startTetherd(flags: string[], command: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Tetherd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-supervisor-"));
  const socket = path.join(dir, "agent.sock");
  const argv = [TETHERD, "--no-tcp", "--socket", socket, ...flags, ...(command.length ? ["--", ...command] : [])];
  const proc = spawn(process.execPath, argv, { cwd: dir, env: { ...process.env, ...env }, stdio: "pipe" });
  let out = "";
  proc.stdout.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr.on("data", (c: Buffer) => (out += c.toString()));
  const exited = once(proc, "exit").then(([code]) => code as number | null);
  const t: Tetherd = { proc, dir, socket, output: () => out, exited };
  started.push(t);
  await waitFor(
    async () => (await get(socket, "/health")).status === 204,
    () => `tetherd never healthy:\n${out}`,
  );
  return t;
}

function get(socket: string, urlPath: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number | undefined; body: string }>((resolve) => {
    const req = http.get({ socketPath: socket, path: urlPath, headers, timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve({ status: undefined, body: "" }));
  });
}

async function waitFor(check: () => boolean | Promise<boolean>, describe: () => string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(describe());
}

test("a supervised command that exits at once leaves the agent up, its output and exit code logged", async () => {
  const t = await startTetherd([], ["sh", "-c", "echo from-the-image; exit 7"]);
  await waitFor(
    () => /supervised command exited/.test(t.output()),
    () => `no exit logged:\n${t.output()}`,
  );
  assert.match(t.output(), /from-the-image/);
  assert.match(t.output(), /"exitCode":7/);
  assert.equal((await get(t.socket, "/health")).status, 204);
  t.proc.kill("SIGTERM");
  assert.equal(await t.exited, 0);
});

test("SIGTERM reaches the supervised command's process group, then the agent exits", async () => {
  const script = 'trap "echo term > marker; exit 0" TERM; echo ready; while :; do sleep 0.05; done';
  const t = await startTetherd([], ["sh", "-c", script]);
  await waitFor(
    () => /ready/.test(t.output()),
    () => `command never started:\n${t.output()}`,
  );
  t.proc.kill("SIGTERM");
  assert.equal(await t.exited, 0);
  assert.equal(readFileSync(path.join(t.dir, "marker"), "utf8"), "term\n");
  assert.match(t.output(), /"exitCode":0/);
});

test("a command that ignores SIGTERM is killed after --stop-timeout", async () => {
  const t = await startTetherd(["--stop-timeout", "200"], ["sh", "-c", 'trap "" TERM; echo ready; sleep 1000']);
  await waitFor(
    () => /ready/.test(t.output()),
    () => `command never started:\n${t.output()}`,
  );
  t.proc.kill("SIGTERM");
  assert.equal(await t.exited, 0);
  assert.match(t.output(), /ignored SIGTERM/);
  assert.match(t.output(), /signal: killed/);
});

test("a command that cannot start is logged and the agent stays up", async () => {
  const t = await startTetherd([], ["/no/such/program"]);
  await waitFor(
    () => /could not start/.test(t.output()),
    () => `no failure logged:\n${t.output()}`,
  );
  assert.equal((await get(t.socket, "/health")).status, 204);
});

test("--inherit-env seeds the defaults from the environment, minus the agent's own, plus TETHER_ENV_*", async () => {
  const t = await startTetherd(["--inherit-env"], ["sh", "-c", 'echo "child-sees LD_PRELOAD=$LD_PRELOAD"'], {
    IMAGE_VAR: "from-image",
    NODE_OPTIONS: "",
    LD_PRELOAD: "",
    TETHER_SECRET: "agent-only",
    TETHER_ENV_LD_PRELOAD: "/lib/libfake.so",
    TETHER_ENV_NODE_OPTIONS: "--max-old-space-size=64",
  });
  const envs = JSON.parse((await get(t.socket, "/envs")).body) as Record<string, string>;
  assert.equal(envs.IMAGE_VAR, "from-image");
  assert.equal(envs.PATH, process.env.PATH);
  assert.equal(envs.LD_PRELOAD, "/lib/libfake.so");
  assert.equal(envs.NODE_OPTIONS, "--max-old-space-size=64");
  assert.equal(envs.TETHER_SECRET, undefined);
  assert.equal(envs.TETHER_ENV_LD_PRELOAD, undefined);
  await waitFor(
    () => /child-sees/.test(t.output()),
    () => `no child output:\n${t.output()}`,
  );
  assert.match(t.output(), /child-sees LD_PRELOAD=\/lib\/libfake\.so/);
});

test("--access-token-file: the token is required, and the file is gone", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-token-"));
  const file = path.join(dir, "token");
  writeFileSync(file, "s3cret\n", { mode: 0o600 });
  try {
    const t = await startTetherd(["--access-token-file", file]);
    assert.equal(existsSync(file), false);
    assert.equal((await get(t.socket, "/envs")).status, 401);
    assert.equal((await get(t.socket, "/envs", { "x-access-token": "s3cret" })).status, 200);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--socket-owner chowns the socket", { skip: process.getuid?.() !== 0 && "needs root to chown" }, async () => {
  const t = await startTetherd(["--socket-owner", "65534:65533"]);
  const info = statSync(t.socket);
  assert.deepEqual({ uid: info.uid, gid: info.gid, mode: info.mode & 0o777 }, { uid: 65534, gid: 65533, mode: 0o600 });
});
