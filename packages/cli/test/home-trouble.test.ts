import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { CliHome, type Outcome, runTether, TETHER } from "./support/cli.js";

/** What a TETHER_HOME in trouble does to tether: a supervisor killed, a damaged registry, a full disk. */

const h = new CliHome();
after(async () => {
  const listed = await h.tether(["ls", "--json", "--state", "creating,running,paused,stopped,error"]);
  for (const s of JSON.parse(listed.stdout || "[]") as { id: string }[]) await h.tether(["rm", "-f", s.id]);
  await h.cleanup();
});

/** True once `pid` is gone or a zombie, polling for a few seconds. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 250; i++) {
    let state: string | undefined;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    } catch {
      return true;
    }
    if (state === "Z") return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

/** Waits for `file` to hold a pid (written by the sandbox's command), and returns it. */
async function pidFrom(file: string): Promise<number> {
  for (let i = 0; i < 250; i++) {
    const text = existsSync(file) ? readFileSync(file, "utf8").trim() : "";
    if (/^\d+$/.test(text)) return Number(text);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no pid in ${file}`);
}

/** The command of the sandboxes here: writes its pid, then prints a line every 50 ms. */
const TICKER = ["sh", "-c", "echo $$ > cmd.pid; while :; do echo tick; sleep 0.05; done"];

describe("a local sandbox whose supervisor dies", () => {
  test("the agent runs on: ls says running, rm -f ends the agent and its command", async () => {
    const r = await h.tether(["create", "--backend", "local", "--label", h.label, "--", ...TICKER]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    const dir = path.join(h.home, "sandboxes", id);
    const command = await pidFrom(path.join(dir, "work", "cmd.pid"));
    const supervisor = JSON.parse(readFileSync(path.join(dir, "supervisor.json"), "utf8")) as {
      pid: number;
      agentPid: number;
    };
    process.kill(supervisor.pid, "SIGKILL");
    assert.ok(await gone(supervisor.pid));

    const ls = await h.tether(["ls", "--json", "--label", h.label]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal((JSON.parse(ls.stdout) as { id: string; state: string }[]).find((s) => s.id === id)?.state, "running");
    const rm = await h.tether(["rm", "-f", id]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.ok(await gone(supervisor.agentPid), `the agent ${supervisor.agentPid} should be gone`);
    assert.ok(await gone(command), `the command ${command} should be gone`);
    assert.ok(!existsSync(dir));
  });
});

describe("a TETHER_HOME that cannot be made", () => {
  // Under /proc, Node 20's recursive mkdir looped for ever: ls and serve hung there.
  test("ls, create and serve say why and exit 125, under /proc and under a file alike", async () => {
    const file = path.join(h.home, "not-a-dir");
    writeFileSync(file, "x");
    for (const home of [`/proc/tether-home-${process.pid}`, path.join(file, "home")]) {
      for (const args of [["ls"], ["create", "--backend", "local", "--", "true"], ["serve", "--port", "0"]]) {
        const r = await runTether(args, { env: { TETHER_HOME: home }, timeoutMs: 20_000 });
        assert.equal(r.code, 125, `${args[0]} in ${home}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`TETHER_HOME ${home} cannot be used: (ENOENT|ENOTDIR)`), r.stderr);
      }
    }
  });
});

describe("a damaged tether.db", () => {
  test("commands say how to repair it; doctor --repair keeps a backup and adopts what runs", async () => {
    const home = new CliHome();
    try {
      const created = await home.tether(["create", "--backend", "local", "--label", home.label, "--", "sleep", "300"]);
      assert.equal(created.code, 0, created.stderr);
      const id = created.stdout.trim();
      const db = path.join(home.home, "tether.db");
      // The header overwritten: SQLite no longer takes it for a database.
      const fd = openSync(db, "r+");
      writeSync(fd, Buffer.alloc(100, 0x5a), 0, 100, 0);
      rmSync(`${db}-wal`, { force: true });
      rmSync(`${db}-shm`, { force: true });

      const ls = await home.tether(["ls"]);
      assert.equal(ls.code, 125);
      assert.match(ls.stderr, /registry .*tether\.db is damaged .*tether doctor --repair/);

      const doctor = await home.tether(["doctor"]);
      assert.equal(doctor.code, 0, doctor.stderr);
      assert.match(doctor.stdout, /^registry: .*tether\.db \(DAMAGED .*run tether doctor --repair\)$/m);

      const repair = await home.tether(["doctor", "--repair"]);
      assert.equal(repair.code, 0, repair.stderr);
      assert.match(repair.stdout, /was damaged/);
      assert.match(repair.stdout, new RegExp(`adopted 1 sandbox\\(es\\): ${id}`));
      const backups = readdirSync(home.home).filter((f) => f.startsWith("tether.db.damaged-"));
      assert.equal(backups.length, 1, readdirSync(home.home).join(" "));

      const after = await home.tether(["ls", "--json"]);
      assert.equal(after.code, 0, after.stderr);
      assert.equal(
        (JSON.parse(after.stdout) as { id: string; state: string }[]).find((s) => s.id === id)?.state,
        "running",
      );
      assert.match((await home.tether(["doctor"])).stdout, /^registry: .*tether\.db \(sound\)$/m);
      const again = await home.tether(["doctor", "--repair"]);
      assert.match(again.stdout, /is sound: nothing to repair/);
      assert.equal((await home.tether(["rm", "-f", id])).code, 0);
    } finally {
      await home.cleanup();
    }
  });
});

/**
 * A TETHER_HOME on an 8 MiB tmpfs in a mount namespace of its own (held by a sleeping
 * process): tether runs in it through nsenter, and this process reaches its files through
 * /proc/<holder>/root. Nothing is mounted on the host's view.
 */
async function fullDiskSkipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "mounting a small tmpfs needs root";
  const probe = await new Promise<number | null>((resolve) => {
    const child = spawn("unshare", ["-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"]);
    child.on("error", () => resolve(null));
    child.on("close", (code) => resolve(code));
  });
  return probe === 0 ? undefined : "cannot mount a tmpfs in a private mount namespace (unshare -m)";
}
const fullSkip = await fullDiskSkipReason();
if (fullSkip) console.log(`# skipping the full-disk test: ${fullSkip}`);

describe("a full TETHER_HOME", { skip: fullSkip }, () => {
  let holder: ChildProcess | undefined;
  after(() => {
    holder?.kill("SIGKILL");
  });

  test("the supervisor survives, ls reads the registry and says why, rm -f ends what it recorded", async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), "tether-full-home-"));
    holder = spawn("unshare", [
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t tmpfs -o size=8m tmpfs '${home}' && echo ready && exec sleep 600`,
    ]);
    const ns = holder;
    await new Promise<void>((resolve, reject) => {
      ns.stdout?.once("data", () => resolve());
      ns.once("close", (code) => reject(new Error(`the mount namespace could not be made (${code})`)));
    });
    const inside = (file: string) => path.join(`/proc/${ns.pid}/root`, file);
    const tether = (args: string[]) =>
      new Promise<Outcome>((resolve, reject) => {
        const child = spawn("nsenter", ["-t", String(ns.pid), "-m", "--", process.execPath, TETHER, ...args], {
          env: { ...process.env, TETHER_HOME: home },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.setEncoding("utf8").on("data", (t: string) => {
          stdout += t;
        });
        child.stderr.setEncoding("utf8").on("data", (t: string) => {
          stderr += t;
        });
        child.on("error", reject);
        child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
      });
    try {
      // 8 KiB lines: a file on tmpfs grows into its last page without asking for space.
      const flood = ["sh", "-c", "echo $$ > cmd.pid; while :; do printf '%8192s\\n' tick; sleep 0.05; done"];
      const created = await tether(["create", "--backend", "local", "--", ...flood]);
      assert.equal(created.code, 0, created.stderr);
      const id = created.stdout.trim();
      const dir = inside(path.join(home, "sandboxes", id));
      const command = await pidFrom(path.join(dir, "work", "cmd.pid"));
      const supervisor = JSON.parse(readFileSync(path.join(dir, "supervisor.json"), "utf8")) as {
        pid: number;
        agentPid: number;
      };

      // Fill the disk, then let the command print into it for a while.
      // Twice: a write the supervisor had half done when the disk filled is cut back off,
      // which frees its pages again a moment later.
      const fillDisk = async (name: string) => {
        fillOnce(name);
        await new Promise((resolve) => setTimeout(resolve, 300));
        fillOnce(`${name}-again`);
      };
      const fillOnce = (name: string) => {
        const fill = openSync(inside(path.join(home, name)), "w");
        const block = Buffer.alloc(64 << 10);
        try {
          for (;;) writeSync(fill, block);
        } catch (err) {
          assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
        } finally {
          closeSync(fill);
        }
      };
      await fillDisk("fill");
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.ok(!(await gone(supervisor.pid)), "the supervisor survives ENOSPC");

      const ls = await tether(["ls", "--json"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stderr, /is full \(no space left on device\)/);
      assert.equal(
        (JSON.parse(ls.stdout) as { id: string; state: string }[]).find((s) => s.id === id)?.state,
        "running",
      );

      // Room again for a moment: the log goes on, saying how much output was lost.
      rmSync(inside(path.join(home, "fill")));
      rmSync(inside(path.join(home, "fill-again")));
      let logs = "";
      for (let i = 0; i < 50 && !/bytes of output were lost: ENOSPC/.test(logs); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        logs = (await tether(["logs", id])).stderr;
      }
      assert.match(logs, /tether supervisor: \d+ bytes of output were lost: ENOSPC/);
      await fillDisk("fill");

      // The processes end; a record that cannot be dropped stays, and rm says why. (SQLite may
      // still write through the WAL and shared-memory files the last command left behind.)
      const rm = await tether(["rm", "-f", id]);
      assert.ok(rm.code === 0 || /is full \(no space left on device\)/.test(rm.stderr), rm.stderr);
      assert.ok(await gone(supervisor.agentPid), `the agent ${supervisor.agentPid} should be gone`);
      assert.ok(await gone(command), `the command ${command} should be gone`);
      assert.ok(await gone(supervisor.pid), `the supervisor ${supervisor.pid} should be gone`);

      // Space again: the record rm could not drop is settled; then a read-only home is read too.
      rmSync(inside(path.join(home, "fill")));
      rmSync(inside(path.join(home, "fill-again")));
      const cleared = await tether(["rm", "-f", id]);
      assert.doesNotMatch((await tether(["ls"])).stdout, new RegExp(id), cleared.stderr);
      const remount = spawn("nsenter", ["-t", String(ns.pid), "-m", "--", "mount", "-o", "remount,ro", home]);
      assert.equal(await new Promise((resolve) => remount.on("close", resolve)), 0);
      const readOnly = await tether(["ls"]);
      assert.equal(readOnly.code, 0, readOnly.stderr);
      assert.match(readOnly.stderr, /cannot be written \(read-only\)/);
    } finally {
      ns.kill("SIGKILL");
      rmSync(home, { recursive: true, force: true });
    }
  });
});
