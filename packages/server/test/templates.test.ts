import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { Sandbox } from "e2b";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

const skip = await dockerSkipReason();
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "cli", "bin", "tether.js");
const name = `built-${randomBytes(4).toString("hex")}`;
const t = new TestServer();
let started = false;
after(async () => {
  if (skip) return;
  if (started) await t.close();
  await new Docker()
    .getImage(`tether-template/${name}:latest`)
    .remove()
    .catch(() => {});
});

test("tether template build: a Dockerfile through the engine, progress on stderr, then sandboxes of it", {
  skip,
}, async () => {
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-server-template-"));
  const context = mkdtempSync(path.join(os.tmpdir(), "tether-template-context-"));
  try {
    writeFileSync(path.join(context, "greeting.txt"), "built by the engine\n");
    writeFileSync(
      path.join(context, "Dockerfile"),
      `FROM ${DEBIAN}\nCOPY greeting.txt /greeting.txt\nRUN echo "ran at build" > /ran.txt\n`,
    );
    const env = { ...process.env, TETHER_HOME: home };
    const build = spawnSync(
      process.execPath,
      [cli, "template", "build", name, "-f", path.join(context, "Dockerfile")],
      {
        env,
        encoding: "utf8",
      },
    );
    assert.equal(build.status, 0, build.stderr);
    assert.equal(build.stdout, `tether-template/${name}:latest\n`);
    assert.match(build.stderr, /COPY greeting\.txt/);
    const listed = JSON.parse(
      execFileSync(process.execPath, [cli, "template", "ls", "--json"], { env, encoding: "utf8" }),
    );
    assert.deepEqual(
      listed.map((x: { name: string; image: string }) => [x.name, x.image]),
      [[name, `tether-template/${name}:latest`]],
    );

    const broken = spawnSync(
      process.execPath,
      [cli, "template", "build", "broken", context, "-f", path.join(context, "nope")],
      {
        env,
        encoding: "utf8",
      },
    );
    assert.notEqual(broken.status, 0);

    await t.start({}, home);
    started = true;
    const key = t.server.keys.create().key;
    const sandbox = await Sandbox.create(name, { apiKey: key, apiUrl: t.url, sandboxUrl: t.url });
    const out = await sandbox.commands.run("cat /greeting.txt /ran.txt");
    assert.equal(out.stdout, "built by the engine\nran at build\n");
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
});
