import assert from "node:assert/strict";
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { InitRequestSchema } from "@tether/protocol/workspace";
import { type InitResponse, Workspace } from "@tether/protocol/workspace";
import { Agent as YoloAgent } from "@tether/protocol/yolo";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { createTestUser, isRoot, type TestUser } from "./support/users.js";

const YOLO_CLIENT = fileURLToPath(new URL("../../test/support/yolo_init_client.py", import.meta.url));
const hasTools = ["git", "gpg"].every((t) => spawnSync(t, ["--version"]).status === 0);
const skip = !isRoot
  ? "needs root (inits run as a throwaway user)"
  : !hasTools
    ? "needs git and gpg (apt-get install git gnupg)"
    : false;
if (skip && process.env.CI) throw new Error(`workspace tests cannot run in CI: ${skip}`);
if (skip) console.log(`# skipping workspace init tests: ${skip}`);

let agent: TestAgent;
let user: TestUser;
let scratch: string;
let socket: string;
let origin: string;

/** Runs git as root in the scratch area, with a fixed identity. */
function git(args: string[], cwd = scratch): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@t",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@t",
      HOME: scratch,
    },
  });
}

/** A bare repository with one commit (README), readable by everyone. */
function makeBareRepo(bare: string): void {
  const work = path.join(scratch, `work-${path.basename(bare)}`);
  git(["init", "-q", "--bare", "-b", "main", bare]);
  git(["init", "-q", "-b", "main", work]);
  execFileSync("sh", ["-c", "echo hello > README"], { cwd: work });
  git(["add", "README"], work);
  git(["commit", "-q", "-m", "first"], work);
  git(["push", "-q", bare, "main"], work);
  // git refuses a repository that belongs to someone else ("dubious ownership").
  execFileSync("chown", ["-R", `${user.uid}:${user.uid}`, bare]);
}

/** Runs a command as the test user, as a login would (HOME set). */
function asUser(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, {
    uid: user.uid,
    gid: user.uid,
    cwd: cwd ?? user.home,
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: user.home },
  });
}

function client() {
  return createClient(
    Workspace,
    agent.transport({ authorization: `Basic ${Buffer.from(`${user.name}:`).toString("base64")}` }),
  );
}

async function runInit(req: MessageInitShape<typeof InitRequestSchema>): Promise<InitResponse[]> {
  const out: InitResponse[] = [];
  for await (const res of client().init(req)) out.push(res);
  return out;
}

function logText(responses: InitResponse[]): string[] {
  return responses.flatMap((r) => (r.event.case === "log" ? [r.event.value.text] : []));
}

function resultOf(responses: InitResponse[]) {
  const last = responses.at(-1);
  assert.equal(last?.event.case, "result", "the stream ends with a result");
  return last.event.value as Extract<InitResponse["event"], { case: "result" }>["value"];
}

async function initError(req: MessageInitShape<typeof InitRequestSchema>): Promise<ConnectError> {
  try {
    await runInit(req);
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("init should have failed");
}

describe("workspace init", { skip }, () => {
  before(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "tether-ws-"));
    chmodSync(scratch, 0o755);
    user = createTestUser("tetherws");
    origin = path.join(scratch, "origin.git");
    makeBareRepo(origin);
    mkdirSync(path.join(scratch, "acme"));
    makeBareRepo(path.join(scratch, "acme", "widgets.git"));
    socket = path.join(scratch, "agent.sock");
    agent = await startTestAgent({
      socket,
      gitBaseUrl: `file://${scratch}`,
      cloneRetry: { attempts: 2, backoffMs: 50 },
    });
  });

  after(async () => {
    if (user) {
      // gpg started an agent as the user; it would keep userdel from removing the account.
      spawnSync("gpgconf", ["--kill", "gpg-agent"], {
        uid: user.uid,
        gid: user.uid,
        env: { HOME: user.home, PATH: process.env.PATH },
      });
      spawnSync("pkill", ["-KILL", "-u", String(user.uid)]);
    }
    await agent?.close();
    user?.remove();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test("clones a file:// repository, makes both keys and sets git's identity and signing", async () => {
    const responses = await runInit({
      repositories: [{ url: `file://${origin}`, dir: "src/project" }],
      gitUserName: "Ada Lovelace",
      gitUserEmail: "ada@example.com",
    });
    const headers = responses.flatMap((r) =>
      r.event.case === "log" && r.event.value.header ? [r.event.value.text] : [],
    );
    assert.ok(
      headers.some((h) => h.startsWith("ssh key")),
      headers.join("\n"),
    );
    assert.ok(headers.some((h) => h.startsWith("gpg signing key")));
    assert.ok(headers.some((h) => h.startsWith(`clone file://${origin}`)));
    const lines = logText(responses);
    assert.ok(
      lines.some((l) => /Cloning into/.test(l)),
      `git's own output is streamed:\n${lines.join("\n")}`,
    );
    const result = resultOf(responses);
    assert.equal(result.changed, true);
    assert.match(result.sshPublicKey, /^ssh-ed25519 AAAA\S+ ada@example.com$/);
    assert.match(result.gpgPublicKey, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
    assert.match(result.gpgFingerprint, /^[0-9A-F]{40}$/);

    const sshDir = path.join(user.home, ".ssh");
    const key = path.join(sshDir, "id_ed25519");
    assert.equal(statSync(sshDir).mode & 0o777, 0o700);
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal(statSync(key).uid, user.uid);
    assert.equal(statSync(`${key}.pub`).uid, user.uid);
    if (spawnSync("ssh-keygen", ["-?"]).error === undefined) {
      // ssh-keygen reads the private key we wrote and derives the same public key.
      const derived = asUser("ssh-keygen", ["-y", "-f", key]).trim().split(" ").slice(0, 2);
      assert.deepEqual(derived, result.sshPublicKey.split(" ").slice(0, 2));
    }

    const config = (k: string) => asUser("git", ["config", "--global", "--get", k]).trim();
    assert.equal(config("user.name"), "Ada Lovelace");
    assert.equal(config("user.email"), "ada@example.com");
    assert.equal(config("user.signingkey"), result.gpgFingerprint);
    assert.equal(config("commit.gpgsign"), "true");

    const clone = path.join(user.home, "src/project");
    assert.equal(readFileSync(path.join(clone, "README"), "utf8"), "hello\n");
    assert.equal(statSync(clone).uid, user.uid);
    // A commit by the user is signed with the new key.
    asUser("git", ["commit", "-q", "--allow-empty", "-m", "signed"], clone);
    const shown = asUser("git", ["log", "-1", "--format=%G? %GF"], clone).trim();
    assert.equal(shown, `G ${result.gpgFingerprint}`);
  });

  test("a second init changes nothing and says so", async () => {
    const keyBefore = readFileSync(path.join(user.home, ".ssh/id_ed25519"));
    const responses = await runInit({
      repositories: [{ url: `file://${origin}`, dir: "src/project" }],
      gitUserName: "Ada Lovelace",
      gitUserEmail: "ada@example.com",
    });
    const result = resultOf(responses);
    assert.equal(result.changed, false);
    const lines = logText(responses);
    assert.ok(
      lines.some((l) => l.includes("id_ed25519 already present")),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => /key [0-9A-F]{40} already present/.test(l)));
    assert.ok(lines.some((l) => l.includes("src/project already present")));
    assert.ok(lines.some((l) => l.includes("user.name already set")));
    assert.ok(!lines.some((l) => /Cloning into/.test(l)));
    assert.deepEqual(readFileSync(path.join(user.home, ".ssh/id_ed25519")), keyBefore);
    assert.match(result.sshPublicKey, /^ssh-ed25519 /);
    assert.match(result.gpgPublicKey, /BEGIN PGP PUBLIC KEY BLOCK/);
  });

  test("a missing tool is a failed_precondition naming it, and nothing changes", async () => {
    const bin = path.join(scratch, "bin-without-gpg");
    mkdirSync(bin);
    symlinkSync(execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim(), path.join(bin, "git"));
    const saved = agent.agent.context.state.envVars;
    agent.agent.context.state.envVars = { PATH: bin };
    try {
      const err = await initError({ repositories: [{ url: `file://${origin}`, dir: "not-cloned" }] });
      assert.equal(err.code, Code.FailedPrecondition);
      assert.match(err.rawMessage, /lacks gpg/);
      assert.ok(err.rawMessage.includes(bin), err.rawMessage);
      assert.ok(!existsSync(path.join(user.home, "not-cloned")));

      agent.agent.context.state.envVars = { PATH: path.join(scratch, "empty-path") };
      const noGit = await initError({ repositories: [{ url: `file://${origin}` }], gpgKey: false });
      assert.equal(noGit.code, Code.FailedPrecondition);
      assert.match(noGit.rawMessage, /lacks git \(for cloning\)/);
    } finally {
      agent.agent.context.state.envVars = saved;
    }
  });

  test("a clone that keeps failing is retried, then aborted with git's output", async () => {
    const responses: InitResponse[] = [];
    let error: ConnectError | undefined;
    try {
      for await (const res of client().init({
        repositories: [{ url: `file://${scratch}/missing.git` }],
        gpgKey: false,
        sshKey: false,
      })) {
        responses.push(res);
      }
    } catch (err) {
      error = ConnectError.from(err);
    }
    assert.equal(error?.code, Code.Aborted);
    assert.match(error?.rawMessage ?? "", /failed after 2 attempts/);
    assert.match(error?.rawMessage ?? "", /does not appear to be a git repository|not found|does not exist/);
    const lines = logText(responses);
    assert.ok(
      lines.some((l) => l.startsWith("retrying in 50 ms")),
      lines.join("\n"),
    );
  });

  test("bad requests are invalid_argument or failed_precondition before anything runs", async () => {
    assert.equal(
      (await initError({ repositories: [{ url: "--upload-pack=touch /tmp/x" }] })).code,
      Code.InvalidArgument,
    );
    assert.equal((await initError({ repositories: [{ url: "" }] })).code, Code.InvalidArgument);
    assert.equal((await initError({ gitUserEmail: "a b" })).code, Code.InvalidArgument);
    // A directory holding something else is not clobbered.
    mkdirSync(path.join(user.home, "occupied"));
    execFileSync("sh", ["-c", `echo x > ${path.join(user.home, "occupied", "f")}`]);
    const occupied = await initError({ repositories: [{ url: `file://${origin}`, dir: "occupied" }] });
    assert.equal(occupied.code, Code.FailedPrecondition);
    const other = await initError({
      repositories: [{ url: `file://${scratch}/acme/widgets.git`, dir: "src/project" }],
    });
    assert.equal(other.code, Code.FailedPrecondition);
    assert.match(other.rawMessage, /is a clone of file:\/\/.*origin\.git/);
  });

  test("yolo's Agent.Init over gRPC on the unix socket (connect-es client)", async () => {
    const transport = createGrpcTransport({
      baseUrl: "http://localhost",
      nodeOptions: { createConnection: () => net.connect(socket) },
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Basic ${Buffer.from(`${user.name}:`).toString("base64")}`);
          return next(req);
        },
      ],
    });
    const yolo = createClient(YoloAgent, transport);
    const replies = [];
    for await (const r of yolo.init({
      envRepoOwner: "acme",
      envRepoName: "widgets",
      githubUserEmail: "ada@example.com",
      userFullName: "Ada Lovelace",
    })) {
      replies.push(r);
    }
    assert.ok(replies.some((r) => r.logLineHeader.startsWith(`clone file://${scratch}/acme/widgets.git`)));
    const last = replies.at(-1);
    assert.match(last?.githubSshPublicKeyContent ?? "", /^ssh-ed25519 /);
    assert.match(last?.githubGpgPublicKeyContent ?? "", /BEGIN PGP PUBLIC KEY BLOCK/);
    assert.equal(readFileSync(path.join(user.home, "widgets", "README"), "utf8"), "hello\n");
    await assert.rejects(
      async () => {
        for await (const _ of yolo.init({ envRepoOwner: "../etc", envRepoName: "x" })) {
        }
      },
      (err: unknown) => ConnectError.from(err).code === Code.InvalidArgument,
    );
  });

  test("yolo's Agent.Init from a foreign gRPC client: Debian's python3-grpcio", async (t) => {
    const python = ["/usr/bin/python3", "python3"].find(
      (p) => spawnSync(p, ["-c", "import grpc"], { stdio: "ignore" }).status === 0,
    );
    if (!python) {
      if (process.env.CI) assert.fail("python3-grpcio is missing in CI (.ci/run installs it)");
      t.skip("python3 with grpcio not found (apt-get install python3-grpcio)");
      return;
    }
    makeBareRepo(path.join(scratch, "acme", "gadgets.git"));
    // Not spawnSync: the agent runs in this process and must keep answering.
    const run = await runPython(python, [
      YOLO_CLIENT,
      socket,
      "acme",
      "gadgets",
      "ada@example.com",
      "Ada Lovelace",
      user.name,
    ]);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const replies = run.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, string>);
    assert.ok(
      replies.some((r) => r.log_line_header?.startsWith("clone file://")),
      run.stdout,
    );
    assert.ok(
      replies.some((r) => /Cloning into/.test(r.log_line ?? "")),
      run.stdout,
    );
    const last = replies.at(-1) ?? {};
    assert.match(last.github_ssh_public_key_content ?? "", /^ssh-ed25519 /);
    assert.match(last.github_gpg_public_key_content ?? "", /BEGIN PGP PUBLIC KEY BLOCK/);
    assert.ok(existsSync(path.join(user.home, "gadgets", "README")));

    const bad = await runPython(python, [YOLO_CLIENT, socket, "acme", "nothing-here", "", "", user.name]);
    assert.equal(bad.status, 3, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /"error": "ABORTED"/);
  });
});

function runPython(python: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(python, args, { encoding: "utf8", timeout: 120_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") reject(err);
      else resolve({ status: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}
