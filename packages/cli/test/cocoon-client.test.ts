import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type RunningAgent, startAgent } from "@tether/agent";

const TETHER = fileURLToPath(new URL("../../bin/tether.js", import.meta.url));

let agent: RunningAgent;
let scratch: string;
let cocoonSocket: string;

/** Runs the real `tether` bin (not spawnSync: the agent lives in this process). */
function tether(args: string[], input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TETHER, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (t: string) => {
      stdout += t;
    });
    child.stderr.setEncoding("utf8").on("data", (t: string) => {
      stderr += t;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });
}

describe("tether client (cocoon-style exec) and tether init", () => {
  before(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "tether-cli-cocoon-"));
    cocoonSocket = path.join(scratch, "cocoon.sock");
    mkdirSync(path.join(scratch, "root/etc"), { recursive: true });
    mkdirSync(path.join(scratch, "work"));
    agent = await startAgent({
      port: false,
      socket: path.join(scratch, "agent.sock"),
      defaultWorkdir: path.join(scratch, "work"),
      logLevel: "silent",
      cocoon: {
        socket: cocoonSocket,
        reseedPaths: {
          urandom: path.join(scratch, "root/urandom"),
          seedFiles: [],
          machineId: path.join(scratch, "root/etc/machine-id"),
        },
      },
    });
  });
  after(async () => {
    await agent?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test("stdin forwarded, stdout and stderr written, exit code passed through", async () => {
    const out = await tether(
      ["client", "--unix", cocoonSocket, "--", "sh", "-c", "cat; echo err >&2; exit 7"],
      "piped in\n",
    );
    assert.equal(out.stdout, "piped in\n");
    assert.equal(out.stderr, "err\n");
    assert.equal(out.code, 7);
  });

  test("large stdin travels in 32 KiB chunks intact", async () => {
    const input = "0123456789abcdef".repeat(20_000);
    const out = await tether(
      ["client", "--unix", cocoonSocket, "-e", "X=1", "--", "sh", "-c", "test $X = 1 && wc -c"],
      input,
    );
    assert.equal(out.stdout.trim(), String(input.length));
    assert.equal(out.code, 0);
  });

  test("--reseed --regen-machine-id", async () => {
    const out = await tether(["client", "--unix", cocoonSocket, "--reseed", "--regen-machine-id"]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(readFileSync(path.join(scratch, "root/urandom")).length, 512);
    assert.match(readFileSync(path.join(scratch, "root/etc/machine-id"), "utf8"), /^[0-9a-f]{32}\n$/);
  });

  test("an error frame and a connection closed before the exit frame are failures", async () => {
    const missing = await tether(["client", "--unix", cocoonSocket, "--", "/no/such/tool"]);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /the agent answered: executable not found: \/no\/such\/tool/);

    const rude = path.join(scratch, "rude.sock");
    const server = net.createServer((conn) => conn.destroy());
    await new Promise<void>((resolve) => server.listen(rude, resolve));
    try {
      const closed = await tether(["client", "--unix", rude, "--", "true"]);
      assert.equal(closed.code, 125);
      assert.match(closed.stderr, /connection closed before exit frame/);
    } finally {
      server.close();
    }
    const usage = await tether(["client", "--", "true"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /exactly one of --cid N, --unix PATH or --tcp HOST:PORT/);
  });

  test("--tcp sends --token (or TETHER_ACCESS_TOKEN) first; without it an agent with a token refuses", async () => {
    const guarded = await startAgent({
      port: false,
      accessToken: "client-token",
      logLevel: "silent",
      cocoon: { tcp: { host: "127.0.0.1", port: 0 } },
    });
    try {
      const address = `127.0.0.1:${guarded.cocoon?.tcp?.port}`;
      const ok = await tether(["client", "--tcp", address, "--token", "client-token", "--", "echo", "authed"]);
      assert.equal(ok.stdout, "authed\n");
      assert.equal(ok.code, 0);
      const refused = await tether(["client", "--tcp", address, "--", "echo", "no"]);
      assert.equal(refused.code, 125);
      assert.equal(refused.stdout, "");
      assert.match(refused.stderr, /the agent answered: unauthenticated/);
    } finally {
      await guarded.close();
    }
  });

  test("tether init --socket clones into the workspace, then reports nothing changed", async () => {
    const origin = path.join(scratch, "origin.git");
    const env = {
      ...process.env,
      HOME: scratch,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@t",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@t",
    };
    execFileSync("git", ["init", "-q", "--bare", "-b", "main", origin], { env });
    execFileSync(
      "sh",
      [
        "-c",
        `git init -q -b main w && cd w && echo cli > README && git add README && git commit -q -m one && git push -q ${origin} main`,
      ],
      { cwd: scratch, env },
    );
    // No keys and no git identity: the agent's user here is this machine's own.
    const args = [
      "init",
      "--socket",
      path.join(scratch, "agent.sock"),
      "--repo",
      `file://${origin}`,
      "--no-ssh-key",
      "--no-gpg-key",
    ];
    const first = await tether(args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /==> clone file:\/\//);
    assert.match(first.stderr, /Cloning into/);
    assert.match(first.stderr, /workspace initialised/);
    assert.equal(readFileSync(path.join(scratch, "work/origin/README"), "utf8"), "cli\n");
    const second = await tether([...args, "--json"]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(JSON.parse(second.stdout).changed, false);
    assert.match(second.stderr, /already present/);
  });
});
