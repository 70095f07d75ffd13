import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CliHome, docker, dockerSkipReason } from "./support/cli.js";

const BUSYBOX = "tether-test/busybox";
const NOSHELL = "tether-test/noshell";
const skip = await dockerSkipReason([BUSYBOX, NOSHELL]);
const gvisorSkip = skip ?? (await dockerSkipReason([BUSYBOX], "runsc"));

const home = new CliHome();
const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-cli-cp-"));
after(async () => {
  await home.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});
const tether = home.tether.bind(home);

/** The tree the copy tests send both ways: nested dirs, an empty one, an executable, a 3 MB file. */
function makeTree(root: string): void {
  mkdirSync(path.join(root, "sub/deeper"), { recursive: true });
  mkdirSync(path.join(root, "empty"));
  writeFileSync(path.join(root, "a.txt"), "alpha\n");
  writeFileSync(path.join(root, "sub/run.sh"), "#!/bin/sh\necho ran\n");
  chmodSync(path.join(root, "sub/run.sh"), 0o750);
  writeFileSync(path.join(root, "sub/private"), "secret");
  chmodSync(path.join(root, "sub/private"), 0o600);
  const big = Buffer.alloc(3_000_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
  writeFileSync(path.join(root, "sub/deeper/big.bin"), big);
}

/** Every entry under `root`: relative path, kind, permission bits and (for files) content. */
function describeTree(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(root, rel)).sort()) {
    const p = path.join(rel, name);
    const st = statSync(path.join(root, p));
    const mode = (st.mode & 0o777).toString(8);
    if (st.isDirectory()) out.push(`${p}/`, ...describeTree(root, p));
    else
      out.push(
        `${p} ${mode} ${readFileSync(path.join(root, p)).toString("base64").length}:${readFileSync(path.join(root, p)).subarray(0, 64).toString("hex")}`,
      );
  }
  return out;
}

describe("a busybox sandbox through the CLI", { skip }, () => {
  let id: string;
  const name = `tether-cli-${home.run.slice(0, 8)}`;
  before(async () => {
    id = await home.create(BUSYBOX, "--name", name, "-e", "GREETING=hi there", "-w", "/tmp");
  });

  test("create prints only the id; ls lists it as a table and as JSON (without its token)", async () => {
    assert.match(id, /^[0-9a-f]{12}$/);
    const table = await tether(["ls"]);
    assert.equal(table.code, 0);
    const [header, ...lines] = table.stdout.trim().split("\n");
    assert.match(header, /^ID\s+NAME\s+IMAGE\s+(BACKEND\s+)?STATE\s+CREATED$/);
    const row = lines.find((l) => l.startsWith(id));
    assert.ok(row, table.stdout);
    assert.match(
      row,
      new RegExp(`^${id}\\s+${name}\\s+${BUSYBOX}\\s+(docker\\s+)?running\\s+\\d+ (seconds|minutes) ago$`),
    );

    const json = await tether(["ls", "--json", "--label", home.label]);
    const list = JSON.parse(json.stdout) as {
      id: string;
      name: string;
      state: string;
      labels: Record<string, string>;
    }[];
    const mine = list.find((s) => s.id === id);
    assert.equal(mine?.name, name);
    assert.equal(mine?.state, "running");
    assert.equal(mine?.labels["tether-test.cli"], home.run);
    assert.doesNotMatch(json.stdout, /accessToken|token/i);
  });

  test("exec streams stdout and stderr apart and passes the exit code through", async () => {
    const r = await tether(["exec", id, "--", "sh", "-c", 'echo "$GREETING"; pwd; echo oops >&2; exit 7']);
    assert.equal(r.stdout, "hi there\n/tmp\n");
    assert.equal(r.stderr, "oops\n");
    assert.equal(r.code, 7);
  });

  test("exec options go before or after the id; flags after the command are the command's", async () => {
    const before = await tether(["exec", "-e", "X=1", "-w", "/", id, "--", "sh", "-c", 'echo "$X $(pwd)"']);
    assert.equal(before.stdout, "1 /\n");
    const afterId = await tether([
      "exec",
      id,
      "-e",
      "X=2",
      "-u",
      "nobody",
      "sh",
      "-c",
      'echo "$X $(id -u)" "$0"',
      "-x",
    ]);
    assert.equal(afterId.stdout, "2 65534 -x\n");
    const byName = await tether(["exec", name, "--", "echo", "by name"]);
    assert.equal(byName.stdout, "by name\n");
  });

  test("exec -i forwards stdin; without -i the command's stdin is empty", async () => {
    const withInput = await tether(["exec", "-i", id, "--", "tr", "a-z", "A-Z"], { input: "hello\nworld\n" });
    assert.equal(withInput.stdout, "HELLO\nWORLD\n");
    const without = await tether(["exec", id, "--", "wc", "-c"], { input: "12345" });
    assert.equal(without.stdout.trim(), "0");
  });

  test("exec: death by signal gives 128+N, an unknown program 127, no command a usage error", async () => {
    assert.equal((await tether(["exec", id, "--", "sh", "-c", "kill -KILL $$"])).code, 137);
    const missing = await tether(["exec", id, "--", "no-such-program"]);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /no-such-program/);
    const none = await tether(["exec", id]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no command given/);
  });

  test("exec -t runs the command on a PTY", async () => {
    const r = await tether(["exec", "-t", id, "--", "sh", "-c", "test -t 0 && test -t 1 && echo on-a-tty; exit 3"]);
    assert.equal(r.stdout, "on-a-tty\r\n");
    assert.equal(r.code, 3);
  });

  test("shell opens a login shell on a PTY and exits with its code", async () => {
    const r = await tether(["shell", id], { input: "echo shell-$((40+2)) $0\nexit 5\n" });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stdout, /shell-42 -?\/bin\/sh/);
  });

  test("shell -u opens the shell as that user, with the agent's own switching (busybox's setpriv cannot)", async () => {
    // nobody's shell is /bin/false, so /bin/sh it is.
    const r = await tether(["shell", "-u", "nobody", id], { input: 'echo "ids $(id -u) $(id -G)"\nexit 4\n' });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stdout, /ids 65534 65534\r?\n/);
  });

  test("cp copies a directory tree in and back out: content, nesting, empty dirs and file modes kept", async () => {
    const source = path.join(scratch, "tree");
    makeTree(source);
    const into = await tether(["cp", source, `${id}:/data`]);
    assert.equal(into.code, 0, into.stderr);
    const listed = await tether([
      "exec",
      id,
      "--",
      "sh",
      "-c",
      "cd /data && find . | sort && stat -c '%a %n' sub/run.sh sub/private",
    ]);
    assert.equal(
      listed.stdout,
      ".\n./a.txt\n./empty\n./sub\n./sub/deeper\n./sub/deeper/big.bin\n./sub/private\n./sub/run.sh\n750 sub/run.sh\n600 sub/private\n",
    );
    assert.equal((await tether(["exec", id, "--", "/data/sub/run.sh"])).stdout, "ran\n");

    // Into an existing directory: the tree lands under its own name.
    const out = path.join(scratch, "out");
    mkdirSync(out);
    const back = await tether(["cp", `${id}:/data`, out]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(describeTree(path.join(out, "data")), describeTree(source));
    // To a new path: the tree gets that name.
    const renamed = await tether(["cp", `${id}:/data/sub`, path.join(scratch, "renamed")]);
    assert.equal(renamed.code, 0, renamed.stderr);
    assert.deepEqual(describeTree(path.join(scratch, "renamed")), describeTree(path.join(source, "sub")));
  });

  test("cp of single files both ways, and - for stdin and stdout", async () => {
    const file = path.join(scratch, "one.txt");
    writeFileSync(file, "one file\n");
    assert.equal((await tether(["cp", file, `${id}:/tmp`])).code, 0);
    assert.equal((await tether(["exec", id, "--", "cat", "/tmp/one.txt"])).stdout, "one file\n");
    assert.equal((await tether(["cp", "-", `${id}:/tmp/from-stdin`], { input: "piped in\n" })).code, 0);
    const toStdout = await tether(["cp", `${id}:/tmp/from-stdin`, "-"]);
    assert.equal(toStdout.stdout, "piped in\n");
    const local = path.join(scratch, "copied.txt");
    assert.equal((await tether(["cp", `${id}:/tmp/one.txt`, local])).code, 0);
    assert.equal(readFileSync(local, "utf8"), "one file\n");
  });

  test("cp errors: a missing source, two local paths", async () => {
    const missing = await tether(["cp", `${id}:/no/such/file`, path.join(scratch, "x")]);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /\/no\/such\/file/);
    const twoLocal = await tether(["cp", "/a", "/b"]);
    assert.equal(twoLocal.code, 2);
    assert.match(twoLocal.stderr, /exactly one of SOURCE and DESTINATION must be ID:PATH/);
  });
});

describe("sandbox lifecycle through the CLI", { skip }, () => {
  test("an image command that exits: the sandbox lives on, logs keep its output", async () => {
    const id = await home.create(BUSYBOX, "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3");
    const ls = await tether(["ls", "--json", "--label", home.label]);
    assert.equal((JSON.parse(ls.stdout) as { id: string; state: string }[]).find((s) => s.id === id)?.state, "running");
    assert.equal((await tether(["exec", id, "--", "echo", "still here"])).stdout, "still here\n");
    const logs = await tether(["logs", id]);
    assert.equal(logs.code, 0);
    assert.match(logs.stdout, /to-stdout/);
    assert.match(logs.stderr, /to-stderr/);
    assert.doesNotMatch(logs.stdout, /to-stderr/);
  });

  test("options after the image are honoured; the command starts after -- or at the first non-option", async () => {
    const created = await tether([
      "create",
      BUSYBOX,
      "--label",
      home.label,
      "--memory",
      "64m",
      "--pids",
      "50",
      "--read-only",
      "--",
      "sleep",
      "600",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    const container = (await docker("ps", "-q", "--filter", `label=tether.sandbox=${id}`)).trim();
    const inspected = JSON.parse(await docker("inspect", container))[0] as {
      HostConfig: { Memory: number; PidsLimit: number; ReadonlyRootfs: boolean };
      Config: { Labels: Record<string, string> };
    };
    assert.equal(inspected.HostConfig.Memory, 64 * 1024 * 1024);
    assert.ok(inspected.HostConfig.PidsLimit >= 50, String(inspected.HostConfig.PidsLimit));
    assert.equal(inspected.HostConfig.ReadonlyRootfs, true);
    assert.equal(inspected.Config.Labels["tether-test.cli"], home.run);
    const ps = await tether(["exec", id, "--", "ps", "-o", "args"]);
    assert.match(ps.stdout, /^sleep 600$/m);

    const bare = await tether(["create", BUSYBOX, "--label", home.label, "echo", "--memory", "600"]);
    assert.equal(bare.code, 0, bare.stderr);
    let logs = await tether(["logs", bare.stdout.trim()]);
    for (let i = 0; i < 50 && !/--memory/.test(logs.stdout); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      logs = await tether(["logs", bare.stdout.trim()]);
    }
    assert.match(logs.stdout, /^--memory 600$/m, "after the first non-option, every argument is the command's");

    const unknown = await tether(["create", BUSYBOX, "--label", home.label, "--memroy", "64m"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--memroy'/);
  });

  test("logs -f follows new output until Ctrl-C", async () => {
    const id = await home.create(
      BUSYBOX,
      "--",
      "sh",
      "-c",
      "i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.1; done",
    );
    let interrupted = false;
    const r = await tether(["logs", "-f", id], {
      onStdout: (out, kill) => {
        if (interrupted || !out.includes("tick5\n")) return;
        interrupted = true;
        kill("SIGINT");
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tick0\n[\s\S]*tick5\n/);
  });

  test("pause, unpause, stop, start, rm (-f for a running one)", async () => {
    const id = await home.create(BUSYBOX);
    const state = async () =>
      (
        JSON.parse((await tether(["ls", "--json", "--label", home.label])).stdout) as { id: string; state: string }[]
      ).find((s) => s.id === id)?.state;
    assert.equal((await tether(["pause", id])).stdout, `${id}\n`);
    assert.equal(await state(), "paused");
    const frozen = await tether(["exec", id, "--", "true"]);
    assert.equal(frozen.code, 125);
    assert.match(frozen.stderr, /is paused/);
    assert.equal((await tether(["unpause", id])).code, 0);
    assert.equal(await state(), "running");
    assert.equal((await tether(["stop", "-t", "2", id])).code, 0);
    assert.equal(await state(), "stopped");
    const stopped = await tether(["exec", id, "--", "true"]);
    assert.equal(stopped.code, 125);
    assert.match(stopped.stderr, new RegExp(`sandbox ${id} is stopped`));
    assert.equal((await tether(["start", id])).code, 0);
    assert.equal((await tether(["exec", id, "--", "echo", "again"])).stdout, "again\n");
    const refused = await tether(["rm", id]);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /is running: stop it first, or use rm -f/);
    assert.equal((await tether(["rm", "-f", id])).stdout, `${id}\n`);
    assert.equal(await state(), undefined);
    assert.ok(!home.sandboxDirs().includes(id));
  });

  test("shell runs the login shell /etc/passwd names; with none there, a clear error", async () => {
    const id = await home.create(NOSHELL);
    // The shell-less image's passwd names /hello as root's shell: that is what runs.
    const named = await tether(["shell", id]);
    assert.equal(named.code, 0, named.stderr);
    assert.match(named.stdout, /hello -l/);
    // A passwd naming a shell the image lacks, and no /bin/sh either.
    const passwd = await tether(["cp", "-", `${id}:/etc/passwd`], { input: "root:x:0:0:root:/root:/bin/bash\n" });
    assert.equal(passwd.code, 0, passwd.stderr);
    const r = await tether(["shell", id]);
    assert.equal(r.code, 125);
    assert.equal(
      r.stderr,
      `tether: sandbox ${id} has no shell (no /bin/bash or /bin/sh in its image): run a program with tether exec ${id} -- PROGRAM\n`,
    );
    assert.equal((await tether(["exec", id, "--", "/hello", "still", "works"])).stdout, "hello still works\n");
  });
});

describe("failures through the CLI", { skip }, () => {
  test("a missing image: one clear line, exit 125, nothing left behind", async () => {
    const [containers, dirs] = [await home.containers(), home.sandboxDirs()];
    const r = await tether(["create", "--label", home.label, "tether-test/no-such-image"]);
    assert.equal(r.code, 125);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      /^tether: image "tether-test\/no-such-image" not found in docker at unix:\/\/\S+ \(pull or build it first\)\n$/,
    );
    assert.deepEqual(await home.containers(), containers);
    assert.deepEqual(home.sandboxDirs(), dirs);
  });

  test("an unknown id: exec, logs, stop, rm and cp say so", async () => {
    for (const args of [
      ["exec", "nosuchbox", "--", "true"],
      ["logs", "nosuchbox"],
      ["stop", "nosuchbox"],
      ["rm", "nosuchbox"],
      ["cp", "nosuchbox:/etc/passwd", "-"],
    ]) {
      const r = await tether(args);
      assert.equal(r.code, 125, args.join(" "));
      assert.match(r.stderr, /no sandbox "nosuchbox": it does not exist or was removed/, args.join(" "));
    }
  });

  test("a sandbox removed behind our back (docker rm -f): ls and exec say so, rm clears it", async () => {
    const id = await home.create(BUSYBOX);
    await docker("rm", "-f", (await docker("ps", "-aq", "--filter", `label=tether.sandbox=${id}`)).trim());
    const ls = await tether(["ls", "--json", "--label", home.label]);
    assert.equal(ls.code, 0);
    const listed = (JSON.parse(ls.stdout) as { id: string; state: string }[]).find((s) => s.id === id);
    // Left out (no registry) or marked as not running (the registry remembers it).
    assert.ok(listed === undefined || listed.state === "error", JSON.stringify(listed));
    const exec = await tether(["exec", id, "--", "true"]);
    assert.equal(exec.code, 125);
    assert.match(
      exec.stderr,
      new RegExp(
        `^tether: (no sandbox "${id}": it does not exist or was removed|sandbox ${id} cannot be used: .*removed outside tether.*)\n$`,
      ),
    );
    await tether(["rm", id]);
    assert.ok(!home.sandboxDirs().includes(id));
    assert.doesNotMatch((await tether(["ls", "--label", home.label])).stdout, new RegExp(id));
  });

  test("an engine that cannot be reached: a clear error naming it", async () => {
    const env = { DOCKER_HOST: "unix:///nonexistent/docker.sock" };
    const r = await tether(["create", "--label", home.label, BUSYBOX], { env });
    assert.equal(r.code, 125);
    assert.match(r.stderr, /^tether: cannot reach the container engine at unix:\/\/\/nonexistent\/docker\.sock: /);
    const exec = await tether(["run", "--image", BUSYBOX, "--label", home.label, "--", "true"], { env });
    assert.equal(exec.code, 125);
    assert.match(exec.stderr, /cannot reach the container engine at unix:\/\/\/nonexistent\/docker\.sock/);
  });
});

describe("a gVisor sandbox through the CLI (runsc, network none)", { skip: gvisorSkip }, () => {
  test("exec and cp both ways", async () => {
    const id = await home.create(BUSYBOX, "--runtime", "runsc", "--network", "none");
    const dmesg = await tether(["exec", id, "--", "dmesg"]);
    assert.match(dmesg.stdout, /gVisor/);
    const file = path.join(scratch, "gvisor.txt");
    writeFileSync(file, "under gvisor\n");
    assert.equal((await tether(["cp", file, `${id}:/tmp/in.txt`])).code, 0);
    assert.equal((await tether(["exec", id, "--", "cat", "/tmp/in.txt"])).stdout, "under gvisor\n");
    assert.equal((await tether(["cp", `${id}:/tmp/in.txt`, "-"])).stdout, "under gvisor\n");
    assert.equal((await tether(["exec", id, "--", "sh", "-c", "exit 9"])).code, 9);
  });
});
