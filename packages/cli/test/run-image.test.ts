import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { CliHome, docker, dockerSkipReason } from "./support/cli.js";

const IMAGES = {
  busybox: "tether-test/busybox",
  musl: "tether-test/musl",
  debian: "tether-test/debian",
  noshell: "tether-test/noshell",
};
const skip = await dockerSkipReason(Object.values(IMAGES));

const home = new CliHome();
const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-cli-run-"));
after(async () => {
  await home.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});
const tether = home.tether.bind(home);

/** `tether run --image` must leave no container and no host directory behind. */
async function assertNothingLeft(): Promise<void> {
  assert.deepEqual(await home.containers(), []);
  assert.deepEqual(home.sandboxDirs(), []);
}

describe("tether run --image", { skip }, () => {
  for (const image of [IMAGES.busybox, IMAGES.musl, IMAGES.debian]) {
    test(`${image}: runs, streams, removes the sandbox, exits with the command's code`, async () => {
      const r = await tether([
        "run",
        "--image",
        image,
        "--label",
        home.label,
        "--",
        "sh",
        "-c",
        'echo "$((6 * 7))"; echo to-stderr >&2; exit 3',
      ]);
      assert.equal(r.stdout, "42\n");
      // Quiet when stderr is not a terminal: only the command's own output.
      assert.equal(r.stderr, "to-stderr\n");
      assert.equal(r.code, 3);
      await assertNothingLeft();
    });
  }

  test(`${IMAGES.noshell}: runs /hello with no shell in the image`, async () => {
    const r = await tether(["run", "--image", IMAGES.noshell, "--label", home.label, "--", "/hello", "a", "b"]);
    assert.equal(r.stdout, "hello a b\n");
    assert.equal(r.code, 0);
    await assertNothingLeft();
  });

  test("stdin, -e, -w, -u and sandbox options reach the command", async () => {
    const r = await tether(
      [
        "run",
        "--image",
        IMAGES.busybox,
        "--label",
        home.label,
        "--memory",
        "64m",
        "--read-only",
        "-e",
        "WHO=you",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "--",
        "sh",
        "-c",
        'tr a-z A-Z; echo "$WHO $(pwd) $(id -u)"; touch /root-is-read-only 2>/dev/null || echo read-only',
      ],
      { input: "shout\n" },
    );
    assert.equal(r.stdout, "SHOUT\nyou /tmp 65534\nread-only\n");
    assert.equal(r.code, 0, r.stderr);
    await assertNothingLeft();
  });

  test("death by signal gives 128+N; an unknown program 127; both clean up", async () => {
    assert.equal(
      (await tether(["run", "--image", IMAGES.busybox, "--label", home.label, "--", "sh", "-c", "kill -KILL $$"])).code,
      137,
    );
    const missing = await tether(["run", "--image", IMAGES.busybox, "--label", home.label, "--", "no-such-program"]);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /no-such-program/);
    await assertNothingLeft();
  });

  test("Ctrl-C stops the command and removes the sandbox (exit 130)", async () => {
    const r = await tether(
      [
        "run",
        "--image",
        IMAGES.busybox,
        "--label",
        home.label,
        "--",
        "sh",
        "-c",
        'trap "echo stopping; exit 1" TERM; echo ready; sleep 60 & wait',
      ],
      {
        onStdout: (out, kill) => {
          if (out === "ready\n") kill("SIGINT");
        },
      },
    );
    assert.equal(r.code, 130);
    assert.equal(r.stdout, "ready\nstopping\n");
    await assertNothingLeft();
  });

  test("a missing image: a clear error, exit 125, nothing left behind", async () => {
    const r = await tether(["run", "--image", "tether-test/no-such-image", "--label", home.label, "--", "true"]);
    assert.equal(r.code, 125);
    assert.match(
      r.stderr,
      /^tether: image "tether-test\/no-such-image" not found in docker at \S+ \(pull or build it first\)\n$/,
    );
    await assertNothingLeft();
  });
});

describe("tether bundle and tether image prepare", { skip }, () => {
  test("bundle --out builds the agent bundle into a directory, and reuses it", async () => {
    const out = path.join(scratch, "bundle");
    const first = await tether(["bundle", "--out", out]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^(built|reused) tether bundle [0-9a-f]{16} in /);
    assert.ok(existsSync(path.join(out, "manifest.json")));
    const again = await tether(["bundle", "--out", out]);
    assert.match(again.stdout, /^reused tether bundle/);
  });

  test("image prepare prints the derived image's tag; a sandbox from it runs", async () => {
    const r = await tether(["image", "prepare", IMAGES.busybox]);
    assert.equal(r.code, 0, r.stderr);
    const tag = r.stdout.trim();
    assert.match(tag, /^tether\/prepared:[0-9a-f]{32}$/);
    const labels = JSON.parse(await docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag));
    assert.ok(labels["tether.bundle"]);
    const missing = await tether(["image", "prepare", "tether-test/no-such-image"]);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /image "tether-test\/no-such-image" not found/);
  });
});
