import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { TetherError, type WorkspaceLogLine } from "../src/index.js";
import { startTestAgent, type TestAgent } from "./support/agent.js";

const skip = spawnSync("git", ["--version"]).status === 0 ? false : "needs git (apt-get install git)";
if (skip && process.env.CI) throw new Error(`workspace SDK tests cannot run in CI: ${skip}`);

let t: TestAgent;
let origin: string;

describe("agent.workspace.init", { skip }, () => {
  before(async () => {
    t = await startTestAgent({ cloneRetry: { attempts: 1, backoffMs: 10 } });
    origin = path.join(t.dir, "origin.git");
    const work = path.join(t.dir, "work");
    const env = {
      ...process.env,
      HOME: t.dir,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@t",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@t",
    };
    execFileSync("git", ["init", "-q", "--bare", "-b", "main", origin], { env });
    execFileSync("git", ["init", "-q", "-b", "main", work], { env });
    execFileSync(
      "sh",
      ["-c", "echo sdk > README && git add README && git commit -q -m one && git push -q ../origin.git main"],
      {
        cwd: work,
        env,
      },
    );
  });
  after(() => t?.close());

  // No keys and no identity: the clone alone, into an absolute path, so the agent's own
  // user (whose home is this machine's) is left untouched.
  test("streams log lines, then the result; a second run changes nothing", async () => {
    const agent = t.client("unix");
    const target = path.join(t.dir, "clone");
    const run = agent.workspace.init({
      repositories: [{ url: `file://${origin}`, dir: target }],
      sshKey: false,
      gpgKey: false,
    });
    const lines: WorkspaceLogLine[] = [];
    for await (const line of run) lines.push(line);
    const result = await run.result;
    assert.equal(result.changed, true);
    assert.ok(lines.some((l) => l.header && l.text.startsWith("clone ")));
    assert.ok(lines.some((l) => !l.header && /Cloning into/.test(l.text)));
    assert.equal(readFileSync(path.join(target, "README"), "utf8"), "sdk\n");

    const again = await agent.workspace.init({
      repositories: [`file://${origin}`].map((url) => ({ url, dir: target })),
      sshKey: false,
      gpgKey: false,
    }).result;
    assert.equal(again.changed, false);
    assert.equal(again.sshPublicKey, "");
  });

  test("a failing init rejects its result (and its iteration) with a TetherError", async () => {
    const run = t
      .client("tcp")
      .workspace.init({ repositories: [`file://${t.dir}/missing.git`], sshKey: false, gpgKey: false });
    await assert.rejects(
      run.result,
      (err: unknown) => err instanceof TetherError && /failed after 1 attempt;/.test(err.message),
    );
    await assert.rejects(async () => {
      for await (const _ of run) {
      }
    }, TetherError);
  });
});
