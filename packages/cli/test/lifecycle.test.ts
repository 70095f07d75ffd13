import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import { buildBundle } from "@tether/bundle";
import { DockerBackend, INTERRUPTED_CREATE, Registry, type SandboxRecord, VANISHED } from "@tether/host";
import { bwrapSkipReason, CliHome, docker, dockerSkipReason, TETHER } from "./support/cli.js";

const BUSYBOX = "tether-test/busybox";
const dockerSkip = await dockerSkipReason([BUSYBOX]);
const bwrapSkip = await bwrapSkipReason();

/** No bubblewrap and no engine: what a fresh machine has. */
const BARE = { TETHER_BWRAP: "/nonexistent/bwrap", DOCKER_HOST: "unix:///nonexistent/docker.sock" };

const h = new CliHome();
after(async () => {
  // Every sandbox this file made, whatever its backend, then the home.
  const listed = await h.tether(["ls", "--json", "--state", "creating,running,paused,stopped,error"]);
  for (const s of JSON.parse(listed.stdout || "[]") as { id: string }[]) await h.tether(["rm", "-f", s.id]);
  await h.cleanup();
});

interface Listed {
  id: string;
  name: string;
  backend: string;
  isolation: string;
  state: string;
  labels: Record<string, string>;
  error?: string;
  expiresAt?: string;
  idleTimeoutMs?: number;
  onExpiry?: string;
  archivePath?: string;
}

async function ls(...args: string[]): Promise<Listed[]> {
  const r = await h.tether(["ls", "--json", ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Listed[];
}

/** `tether create` with this file's label; the new id. */
async function create(...args: string[]): Promise<string> {
  const r = await h.tether(["create", "--label", h.label, ...args]);
  assert.equal(r.code, 0, `tether create ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

function record(id: string): SandboxRecord | undefined {
  const registry = new Registry(h.home);
  try {
    return registry.get(id);
  } finally {
    registry.close();
  }
}

describe("tether doctor", () => {
  test("lists every backend with whether it works and why", async () => {
    const r = await h.tether(["doctor"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^docker\s+(yes|no)\s+container/m);
    assert.match(r.stdout, /^bwrap\s+(yes|no)\s+namespaces/m);
    assert.match(r.stdout, /^local\s+yes\s+none\s+.*NO isolation/m);
    assert.match(r.stdout, new RegExp(`without --image, tether run uses: ${bwrapSkip ? "local" : "bwrap"}`));
    if (!dockerSkip) assert.match(r.stdout, /^docker\s+yes\s+container\s+docker .* runtimes: .*runc/m);
  });

  test("on a machine with neither Docker nor bubblewrap: says why, exit 0", async () => {
    const r = await h.tether(["doctor", "--json"], { env: BARE });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      backends: { kind: string; available: boolean; reason: string }[];
      embeddedDefault: string;
    };
    const by = Object.fromEntries(report.backends.map((b) => [b.kind, b]));
    assert.equal(by.docker.available, false);
    assert.match(by.docker.reason, /nonexistent\/docker\.sock/);
    assert.equal(by.bwrap.available, false);
    assert.match(by.bwrap.reason, /no bwrap binary/);
    assert.equal(by.local.available, true);
    assert.equal(report.embeddedDefault, "local");
  });

  test("an ssh:// DOCKER_HOST goes through ssh (loaded on first use in the CLI's bundle)", async () => {
    // Nothing listens on loopback port 1: the ssh transport itself must load and try.
    const r = await h.tether(["doctor", "--json"], { env: { DOCKER_HOST: "ssh://nobody@127.0.0.1:1" } });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { backends: { kind: string; available: boolean; reason: string }[] };
    const docker = report.backends.find((b) => b.kind === "docker");
    assert.equal(docker?.available, false);
    assert.match(docker?.reason ?? "", /ECONNREFUSED 127\.0\.0\.1:1/);
  });
});

describe("tether run without an image: the embedded default", () => {
  test("bwrap where it works: no warning, nothing left behind", { skip: bwrapSkip }, async () => {
    const r = await h.tether(["run", "--", "sh", "-c", "echo hi; hostname"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^hi\ntether-/);
    assert.equal(r.stderr, "");
    assert.deepEqual(await ls("--state", "creating,running,paused,stopped,error", "--label", "tether-run=1"), []);
  });

  test("neither Docker nor bubblewrap: local, said plainly, same result", async () => {
    const before = h.sandboxDirs().length;
    const r = await h.tether(["run", "--", "sh", "-c", "echo hi; exit 4"], { env: BARE });
    assert.equal(r.code, 4);
    assert.equal(r.stdout, "hi\n");
    assert.match(r.stderr, /NO isolation/);
    assert.equal(h.sandboxDirs().length, before);
  });

  test("a TETHER_HOME that cannot be written: still runs, in a scratch home", async () => {
    const r = await h.tether(["run", "--backend", "local", "--", "echo", "still"], {
      env: { TETHER_HOME: "/etc/passwd/tether-cannot-be-here" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "still\n");
  });

  test("--backend with an image that is not docker is refused", async () => {
    const r = await h.tether(["run", "--backend", "local", "--image", BUSYBOX, "--", "true"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /image needs a container engine/);
  });
});

describe("tether create --backend and ls", () => {
  test("local: warned at create, 'no isolation' in ls; filters by label and state; --json", async () => {
    const r = await h.tether(["create", "--backend", "local", "--label", h.label, "--label", "role=web"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /NO isolation/);
    const web = r.stdout.trim();
    const other = await create("--backend", "local", "--label", "role=db");
    const stopped = await create("--backend", "local", "--label", "role=db");
    assert.equal((await h.tether(["stop", stopped])).code, 0);

    const table = await h.tether(["ls", "--label", "role=web"]);
    assert.match(table.stdout, /BACKEND/);
    assert.match(table.stdout, new RegExp(`${web}.*local \\(no isolation\\)`));
    assert.doesNotMatch(table.stdout, new RegExp(other));

    assert.deepEqual((await ls("--label", "role=db")).map((s) => s.id).sort(), [other, stopped].sort());
    assert.deepEqual(
      (await ls("--label", "role=db", "--state", "stopped")).map((s) => s.id),
      [stopped],
    );
    assert.deepEqual(
      (await ls("--label", "role=db", "--label", h.label, "--state", "running")).map((s) => s.id),
      [other],
    );
    const [json] = await ls("--label", "role=web");
    assert.equal(json.backend, "local");
    assert.equal(json.isolation, "none");
    assert.equal(json.state, "running");
    assert.equal(json.labels.role, "web");
    assert.ok(!JSON.stringify(json).includes("accessToken"));
    const bad = await h.tether(["ls", "--state", "sleeping"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /sleeping/);
  });

  test("20 concurrent tether create processes: 20 rows, all distinct, all running", async () => {
    const label = `burst=${process.pid}`;
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () =>
        h.tether(["create", "--backend", "local", "--label", h.label, "--label", label]),
      ),
    );
    for (const o of outcomes) assert.equal(o.code, 0, o.stderr);
    const ids = outcomes.map((o) => o.stdout.trim());
    assert.equal(new Set(ids).size, 20);
    const listed = await ls("--label", label);
    assert.deepEqual(listed.map((s) => s.id).sort(), [...ids].sort());
    assert.ok(listed.every((s) => s.state === "running"));
    const names = new Set(listed.map((s) => s.name));
    assert.equal(names.size, 20);
    // Each answers.
    const echo = await h.tether(["exec", ids[7], "--", "echo", "seven"]);
    assert.equal(echo.stdout, "seven\n", echo.stderr);
    for (const id of ids) await h.tether(["rm", "-f", id]);
    assert.deepEqual(await ls("--label", label), []);
  });
});

/** Starts `tether create ARGS`, kills it with SIGKILL once `ready()` holds; resolves after it died. */
function killMidCreate(args: string[], ready: () => boolean): Promise<{ killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TETHER, "create", ...args], {
      env: { ...process.env, TETHER_HOME: h.home },
      stdio: "ignore",
    });
    let killed = false;
    const timer = setInterval(() => {
      if (!killed && ready()) {
        killed = true;
        child.kill("SIGKILL");
      }
    }, 2);
    child.on("error", reject);
    child.on("close", () => {
      clearInterval(timer);
      resolve({ killed });
    });
  });
}

function creatingIds(): string[] {
  const registry = new Registry(h.home);
  try {
    return registry.list({ states: ["creating"] }).map((r) => r.id);
  } finally {
    registry.close();
  }
}

describe("kill -9 mid-create, then reconcile", () => {
  const points = [
    { when: "the row is written", ready: (known: Set<string>) => creatingIds().some((id) => !known.has(id)) },
    {
      when: "the sandbox directory appears",
      ready: (known: Set<string>) => h.sandboxDirs().some((d) => !known.has(d)),
    },
    {
      when: "the supervisor is up",
      ready: (known: Set<string>) =>
        h.sandboxDirs().some((d) => !known.has(d) && existsSync(path.join(h.home, "sandboxes", d, "supervisor.json"))),
    },
  ];
  for (const point of points) {
    test(`local, killed when ${point.when}: consistent after reconcile`, async () => {
      const known = new Set([
        ...h.sandboxDirs(),
        ...(await ls("--state", "creating,running,paused,stopped,error")).map((s) => s.id),
      ]);
      const label = `kill=${Math.random().toString(36).slice(2)}`;
      const { killed } = await killMidCreate(["--backend", "local", "--label", h.label, "--label", label], () =>
        point.ready(known),
      );
      assert.ok(killed, "the create finished before it could be killed");
      const r = await h.tether(["reconcile"]);
      assert.equal(r.code, 0, r.stderr);
      await assertConsistent(label);
    });
  }

  test("docker, killed when the container appears: consistent after reconcile", { skip: dockerSkip }, async () => {
    const label = `kill=${Math.random().toString(36).slice(2)}`;
    let containers = "";
    const poll = setInterval(() => {
      docker("ps", "-aq", "--filter", `label=${label}`).then(
        (out) => {
          containers = out.trim();
        },
        () => {},
      );
    }, 20);
    const { killed } = await killMidCreate(["--label", h.label, "--label", label, BUSYBOX], () => containers !== "");
    clearInterval(poll);
    assert.ok(killed, "the create finished before it could be killed");
    const r = await h.tether(["reconcile"]);
    assert.equal(r.code, 0, r.stderr);
    await assertConsistent(label);
  });
});

/**
 * One sandbox carries `label`: either it is running and answers, or its record says
 * error (interrupted) and nothing of it is left: no container, no host directory.
 */
async function assertConsistent(label: string): Promise<void> {
  const [listed, ...more] = await ls("--state", "creating,running,paused,stopped,error", "--label", label);
  assert.ok(listed, `no record for ${label}`);
  assert.deepEqual(more, []);
  if (listed.state === "running") {
    const echo = await h.tether(["exec", listed.id, "--", "echo", "alive"]);
    assert.equal(echo.stdout, "alive\n", echo.stderr);
  } else {
    assert.equal(listed.state, "error", JSON.stringify(listed));
    assert.equal(listed.error, INTERRUPTED_CREATE);
    assert.ok(!h.sandboxDirs().includes(listed.id), "its host directory is left");
    if (listed.backend === "docker") assert.equal((await docker("ps", "-aq", "--filter", `label=${label}`)).trim(), "");
  }
  assert.equal((await h.tether(["rm", "-f", listed.id])).code, 0);
}

describe("reconcile on restart", () => {
  test("containers made and removed behind our back: adopted, then marked", { skip: dockerSkip }, async () => {
    const label = `behind=${process.pid}`;
    const [key, value] = label.split("=");
    const bundle = () => buildBundle({ root: path.join(h.home, "bundle") });
    const made = await new DockerBackend({ home: h.home, bundle }).create({
      image: BUSYBOX,
      labels: { [key]: value, [h.label.split("=")[0]]: h.label.split("=")[1] },
    });
    const [adopted] = await ls("--label", label);
    assert.equal(adopted?.id, made.id);
    assert.equal(adopted.state, "running");
    const echo = await h.tether(["exec", made.id, "--", "echo", "adopted"]);
    assert.equal(echo.stdout, "adopted\n", echo.stderr);

    await docker("rm", "-f", made.backendId);
    const r = await h.tether(["reconcile"]);
    assert.match(r.stdout, new RegExp(`vanished ${made.id}`));
    const [marked] = await ls("--label", label);
    assert.equal(marked.state, "error");
    assert.equal(marked.error, VANISHED);
    assert.equal(record(made.id)?.state, "error");
  });

  test("a state changed behind our back is fixed", { skip: dockerSkip }, async () => {
    const id = await create(BUSYBOX);
    const info = record(id);
    await docker("stop", "-t", "1", info?.backendId ?? id);
    const r = await h.tether(["reconcile"]);
    assert.match(r.stdout, new RegExp(`fixed ${id}: running -> stopped`));
    assert.equal(record(id)?.state, "stopped");
  });
});

describe("timeouts, enforced by any CLI call", () => {
  test("--timeout with --on-expiry stop: stopped by the next tether call", async () => {
    const id = await create("--backend", "local", "--timeout", "1s");
    const [listed] = (await ls()).filter((s) => s.id === id);
    assert.ok(listed.expiresAt);
    await new Promise((r) => setTimeout(r, 1200));
    await h.tether(["ls"]);
    assert.equal(record(id)?.state, "stopped");
  });

  test("--timeout with --on-expiry remove: removed by the next tether call", async () => {
    const id = await create("--backend", "local", "--timeout", "1s", "--on-expiry", "remove");
    await new Promise((r) => setTimeout(r, 1200));
    const r = await h.tether(["doctor"]);
    assert.equal(r.code, 0);
    // doctor touches no registry; the next command that does expires it.
    await h.tether(["ls"]);
    assert.equal(record(id), undefined);
    assert.ok(!h.sandboxDirs().includes(id));
  });

  test("--idle-timeout: an exec keeps it alive, idleness stops it", async () => {
    // Margins of many seconds: each tether command is a Node start, which took over 3 s on a
    // machine loaded 12 times over its cores (the exec then found the sandbox idle too long).
    const id = await create("--backend", "local", "--idle-timeout", "10s");
    // Longer than the timeout: only the exec's own activity can keep the sandbox running.
    const busy = await h.tether(["exec", id, "--", "sleep", "11"]);
    assert.equal(busy.code, 0, busy.stderr);
    await h.tether(["ls"]);
    assert.equal(record(id)?.state, "running", "the exec that just ended counts as activity");
    await new Promise((r) => setTimeout(r, 10_300));
    await h.tether(["ls"]);
    assert.equal(record(id)?.state, "stopped");
    const events = new Registry(h.home);
    assert.ok(events.events(id).some((e) => e.kind === "expired" && /idle/.test(e.detail ?? "")));
    events.close();
  });

  test("bad durations are refused", async () => {
    const r = await h.tether(["create", "--backend", "local", "--timeout", "soon"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not a duration/);
  });
});

describe("tether gc", () => {
  test("archives stopped sandboxes older than --older-than", async () => {
    const id = await create("--backend", "local");
    const exec = await h.tether(["exec", id, "--", "sh", "-c", "echo kept > result.txt"]);
    assert.equal(exec.code, 0, exec.stderr);
    assert.equal((await h.tether(["stop", id])).code, 0);
    const none = await h.tether(["gc"]);
    assert.equal(none.code, 0, none.stderr);
    assert.doesNotMatch(none.stdout, new RegExp(id));
    const r = await h.tether(["gc", "--older-than", "0"]);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split("\n").find((l) => l.includes(id));
    assert.ok(line, r.stdout);
    const archive = line.split(" -> ")[1];
    assert.ok(path.basename(archive).endsWith(`-${id}`));
    assert.ok(readdirSync(path.join(h.home, "archive")).includes(path.basename(archive)));
    assert.ok(existsSync(path.join(archive, "work", "result.txt")));
    assert.ok(!h.sandboxDirs().includes(id));
    assert.ok(!(await ls()).some((s) => s.id === id));
    const [archived] = (await ls("--state", "archived")).filter((s) => s.id === id);
    assert.equal(archived.state, "archived");
    assert.equal(archived.archivePath, archive);
  });
});
