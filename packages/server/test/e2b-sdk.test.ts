import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CommandExitError, FilesystemEventType, Sandbox } from "e2b";
import { eventually, request, upgrade } from "./support/http.js";
import { DEBIAN, dockerSkipReason, TestServer } from "./support/server.js";

const skip = await dockerSkipReason();
const t = new TestServer();
const DOMAIN = "tether.test";

before(async () => {
  if (skip) return;
  await t.start({ domain: DOMAIN });
  const { key } = t.server.keys.create({ team: "alpha" });
  t.server.templates.put("debian", DEBIAN);
  // What a user sets: the SDK in its normal mode, every call through this one URL.
  process.env.E2B_API_URL = t.url;
  process.env.E2B_SANDBOX_URL = t.url;
  process.env.E2B_API_KEY = key;
});
after(async () => {
  if (!skip) await t.close();
});

test("create from a template, run a command, getInfo, list, kill", { skip }, async () => {
  const sandbox = await Sandbox.create("debian", { metadata: { purpose: "core" } });
  assert.match(sandbox.sandboxId, /^[a-z0-9]+$/);
  const result = await sandbox.commands.run("echo hello from $(cat /etc/debian_version | cut -c1-2)");
  assert.equal(result.exitCode, 0);
  assert.match(result.stdout, /^hello from \d/);
  const failed = await sandbox.commands.run("exit 7").catch((e: unknown) => e);
  assert.ok(failed instanceof CommandExitError);
  assert.equal(failed.exitCode, 7);

  const info = await sandbox.getInfo();
  assert.equal(info.sandboxId, sandbox.sandboxId);
  assert.equal(info.templateId, "debian");
  assert.equal(info.state, "running");
  assert.deepEqual(info.metadata, { purpose: "core" });
  assert.ok(info.endAt.getTime() > Date.now());

  const listed = await Sandbox.list({ query: { metadata: { purpose: "core" } } }).nextItems();
  assert.deepEqual(
    listed.map((s) => s.sandboxId),
    [sandbox.sandboxId],
  );
  assert.equal(await sandbox.isRunning(), true);
  assert.equal(await sandbox.kill(), true);
  assert.equal(await Sandbox.kill(sandbox.sandboxId), false);
  await assert.rejects(Sandbox.getInfo(sandbox.sandboxId), /not found/);
});

test("background commands, a pty, files written, read, listed and watched", { skip }, async () => {
  const sandbox = await Sandbox.create("debian");
  try {
    const lines: string[] = [];
    const background = await sandbox.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.2; done", {
      background: true,
      onStdout: (d) => {
        lines.push(d);
      },
    });
    const done = await background.wait();
    assert.equal(done.exitCode, 0);
    assert.equal(lines.join(""), "tick 1\ntick 2\ntick 3\n");

    let screen = "";
    const pty = await sandbox.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => {
        screen += Buffer.from(d).toString();
      },
    });
    await sandbox.pty.sendInput(pty.pid, Buffer.from("echo pty-$((6*7))\nexit\n"));
    await pty.wait().catch(() => undefined);
    assert.match(screen, /pty-42/);

    const events: string[] = [];
    await sandbox.files.makeDir("/tmp/watched");
    const watcher = await sandbox.files.watchDir("/tmp/watched", (e) => {
      if (e.type === FilesystemEventType.WRITE || e.type === FilesystemEventType.CREATE) events.push(e.name);
    });
    await sandbox.files.write("/tmp/watched/a.txt", "alpha");
    assert.equal(await sandbox.files.read("/tmp/watched/a.txt"), "alpha");
    const names = (await sandbox.files.list("/tmp/watched")).map((e) => e.name);
    assert.deepEqual(names, ["a.txt"]);
    await eventually("the watch event", async () => (events.includes("a.txt") ? true : undefined));
    await watcher.stop();
  } finally {
    await sandbox.kill();
  }
});

test("list pages with limit and X-Next-Token, in order, filtered by state", { skip }, async () => {
  const made: Sandbox[] = [];
  try {
    for (let i = 0; i < 3; i++)
      made.push(await Sandbox.create("debian", { metadata: { batch: "paging", n: String(i) } }));
    const paginator = Sandbox.list({ query: { metadata: { batch: "paging" } }, limit: 2, order: "asc" } as never);
    const first = await paginator.nextItems();
    assert.equal(paginator.hasNext, true);
    const second = await paginator.nextItems();
    assert.equal(paginator.hasNext, false);
    assert.deepEqual(
      [...first, ...second].map((s) => s.metadata.n),
      ["0", "1", "2"],
    );
    const paused = await Sandbox.list({ query: { metadata: { batch: "paging" }, state: ["paused"] } }).nextItems();
    assert.deepEqual(paused, []);
  } finally {
    await Promise.all(made.map((s) => s.kill()));
  }
});

test("pause keeping memory freezes processes; connect resumes them (201) and pause again is false", {
  skip,
}, async () => {
  const sandbox = await Sandbox.create("debian");
  try {
    // timeoutMs 0: as in envd, a command dies at its deadline (the SDK's default is 60 s).
    const sleeper = await sandbox.commands.run("sleep 600", { background: true, timeoutMs: 0 });
    assert.equal(await sandbox.pause(), true);
    assert.equal((await sandbox.getInfo()).state, "paused");
    assert.equal(await Sandbox.pause(sandbox.sandboxId), false);
    assert.equal(await sandbox.isRunning(), false);
    const again = await Sandbox.connect(sandbox.sandboxId);
    assert.equal((await again.getInfo()).state, "running");
    const pids = (await again.commands.list()).map((p) => p.pid);
    assert.ok(pids.includes(sleeper.pid), `the sleep (pid ${sleeper.pid}) survived: ${pids.join(", ")}`);
  } finally {
    await sandbox.kill();
  }
});

test("pause without memory stops the sandbox but keeps its files; connect starts it again", { skip }, async () => {
  const sandbox = await Sandbox.create("debian");
  try {
    await sandbox.files.write("/root/kept.txt", "still here");
    assert.equal(await sandbox.pause({ keepMemory: false } as never), true);
    assert.equal((await sandbox.getInfo()).state, "paused");
    const again = await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 120_000 });
    assert.equal(await again.files.read("/root/kept.txt"), "still here");
    const info = await again.getInfo();
    assert.equal(info.state, "running");
    assert.ok(info.endAt.getTime() > Date.now() + 60_000);
  } finally {
    await sandbox.kill();
  }
});

test("setTimeout shortens the lifetime and the sandbox really expires", { skip }, async () => {
  const sandbox = await Sandbox.create("debian", { timeoutMs: 600_000 });
  await sandbox.setTimeout(2000);
  const info = await sandbox.getInfo();
  assert.ok(info.endAt.getTime() < Date.now() + 5000, `endAt ${info.endAt.toISOString()}`);
  await eventually("the sandbox to expire", () =>
    Sandbox.getInfo(sandbox.sandboxId).then(
      () => undefined,
      (err: Error) => err,
    ),
  );
  assert.equal(await Sandbox.kill(sandbox.sandboxId), false);
});

const ECHO_SERVER = String.raw`
use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "listen: $!";
$| = 1; print "listening\n";
while (my $c = $s->accept) {
  my ($up, $l) = (0);
  while (defined($l = <$c>)) { $up = 1 if $l =~ /^upgrade:/i; last if $l eq "\r\n"; }
  if ($up) {
    print $c "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"; $c->flush;
    my $buf; while (sysread($c, $buf, 4096)) { syswrite($c, $buf) }
  } else {
    print $c "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
  }
  close $c;
}
`;

test("getHost: a server inside the sandbox, reached through the proxy by Host and by headers, upgrades too", {
  skip,
}, async () => {
  const sandbox = await Sandbox.create("debian");
  try {
    await sandbox.files.write("/tmp/echo.pl", ECHO_SERVER);
    let out = "";
    await sandbox.commands.run("perl /tmp/echo.pl", {
      background: true,
      timeoutMs: 0,
      onStdout: (d) => {
        out += d;
      },
    });
    await eventually("the server to listen", async () => (out.includes("listening") ? true : undefined));
    const host = sandbox.getHost(8080);
    assert.equal(host, `8080-${sandbox.sandboxId}.${DOMAIN}`);
    const byHost = await request(t.url, { headers: { host } });
    assert.equal(byHost.status, 200);
    assert.equal(byHost.body, "hello");
    const byHeaders = await request(t.url, {
      headers: { "e2b-sandbox-id": sandbox.sandboxId, "e2b-sandbox-port": "8080" },
    });
    assert.equal(byHeaders.body, "hello");

    const { socket } = await upgrade(t.url, { host });
    const echoed = new Promise<string>((resolve) => socket.once("data", (d: Buffer) => resolve(d.toString())));
    socket.write("ping through the tunnel");
    assert.equal(await echoed, "ping through the tunnel");
    socket.destroy();

    const closedPort = await request(t.url, { headers: { host: `8081-${sandbox.sandboxId}.${DOMAIN}` } });
    assert.equal(closedPort.status, 502);
    const unknown = await request(t.url, { headers: { host: `8080-nosuchsandbox.${DOMAIN}` } });
    assert.equal(unknown.status, 502);
    assert.deepEqual(JSON.parse(unknown.body), {
      sandboxId: "nosuchsandbox",
      message: "sandbox nosuchsandbox not found",
      code: 502,
    });
  } finally {
    await sandbox.kill();
  }
});

test("signed upload and download URLs work through Host routing", { skip }, async () => {
  const sandbox = await Sandbox.create("debian");
  try {
    const rewrite = (signed: string) => {
      // The SDK points signed URLs at E2B_SANDBOX_URL; Host routing is what serves them.
      const url = new URL(signed);
      return { path: `${url.pathname}${url.search}`, host: `49983-${sandbox.sandboxId}.${DOMAIN}` };
    };
    const up = rewrite(await sandbox.uploadUrl("/tmp/signed.txt"));
    assert.match(up.path, /signature=v1_/);
    const form = new FormData();
    form.append("file", new Blob(["signed upload"]), "signed.txt");
    const encoded = new Response(form);
    const body = Buffer.from(await encoded.arrayBuffer());
    const put = await request(t.url, {
      method: "POST",
      path: up.path,
      headers: { host: up.host, "content-type": encoded.headers.get("content-type") ?? "" },
      body,
    });
    assert.equal(put.status, 200, put.body);
    const down = rewrite(await sandbox.downloadUrl("/tmp/signed.txt"));
    const got = await request(t.url, { path: down.path, headers: { host: down.host } });
    assert.equal(got.status, 200);
    assert.equal(got.body, "signed upload");
    const forged = await request(t.url, {
      path: down.path.replace(/signature=[^&]+/, "signature=v1_forged"),
      headers: { host: down.host },
    });
    assert.equal(forged.status, 401);
  } finally {
    await sandbox.kill();
  }
});

test("getMetrics: a sample of the engine's cgroup stats", { skip }, async () => {
  const sandbox = await Sandbox.create("debian");
  try {
    await sandbox.commands.run("head -c 20000000 /dev/urandom > /root/noise");
    const metrics = await sandbox.getMetrics();
    assert.equal(metrics.length, 1);
    const [m] = metrics;
    assert.ok(m.cpuCount >= 1);
    assert.ok(m.cpuUsedPct >= 0 && m.cpuUsedPct <= 100, `cpuUsedPct ${m.cpuUsedPct}`);
    assert.ok(m.memUsed > 0 && m.memUsed < m.memTotal, `memUsed ${m.memUsed} of ${m.memTotal}`);
    assert.ok(m.diskUsed >= 20_000_000, `diskUsed ${m.diskUsed}`);
    assert.ok(Math.abs(m.timestamp.getTime() - Date.now()) < 60_000);
    const past = await sandbox.getMetrics({
      start: new Date(Date.now() - 7_200_000),
      end: new Date(Date.now() - 3_600_000),
    });
    assert.deepEqual(past, []);
  } finally {
    await sandbox.kill();
  }
});

test("a sandbox created to pause on timeout is paused, not killed, and connect resumes it", { skip }, async () => {
  const sandbox = await Sandbox.create("debian", { timeoutMs: 600_000, lifecycle: { onTimeout: "pause" } } as never);
  try {
    await sandbox.files.write("/root/before-timeout.txt", "kept");
    await sandbox.setTimeout(1000);
    assert.equal((await sandbox.getInfo()).lifecycle?.onTimeout, "pause");
    await eventually("the timeout to pause it", async () =>
      (await Sandbox.getInfo(sandbox.sandboxId)).state === "paused" ? true : undefined,
    );
    const again = await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 120_000 });
    assert.equal(await again.files.read("/root/before-timeout.txt"), "kept");
  } finally {
    await Sandbox.kill(sandbox.sandboxId);
  }
});

test("createSnapshot, sandboxes from it, fork, listSnapshots and deleteSnapshot", { skip }, async () => {
  const sandbox = await Sandbox.create("debian");
  const made: Sandbox[] = [sandbox];
  try {
    await sandbox.files.write("/root/state.txt", "snapshotted");
    const snapshot = await sandbox.createSnapshot({ name: "with-state" });
    assert.match(snapshot.snapshotId, /^[a-z0-9]+$/);
    assert.deepEqual(snapshot.names, ["with-state"]);
    assert.equal((await sandbox.commands.run("echo still running")).stdout, "still running\n");
    for (const template of [snapshot.snapshotId, "with-state"]) {
      const copy = await Sandbox.create(template);
      made.push(copy);
      assert.equal(await copy.files.read("/root/state.txt"), "snapshotted");
    }
    const forks = await sandbox.fork({ count: 2 });
    assert.equal(forks.length, 2);
    for (const fork of forks) {
      assert.ok(fork instanceof Sandbox, String(fork));
      made.push(fork);
      assert.equal(await fork.files.read("/root/state.txt"), "snapshotted");
      assert.notEqual(fork.sandboxId, sandbox.sandboxId);
    }
    const listed = await Sandbox.listSnapshots({ sandboxId: sandbox.sandboxId } as never).nextItems();
    assert.ok(listed.some((s) => s.snapshotId === snapshot.snapshotId));
    // Another team can neither list nor use nor delete it.
    const other = { apiKey: t.server.keys.create({ team: "omega" }).key };
    assert.deepEqual(await Sandbox.listSnapshots(other).nextItems(), []);
    await assert.rejects(Sandbox.create(snapshot.snapshotId, other));
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId, other), false);
    // In use by the two copies: refused until they are gone.
    await assert.rejects(Sandbox.deleteSnapshot(snapshot.snapshotId), /in use/);
    for (const copy of made.splice(1, 2)) await copy.kill();
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), true);
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), false);
  } finally {
    await Promise.all(made.map((s) => s.kill().catch(() => false)));
  }
});

test("allowPublicTraffic false: the sandbox's ports want its traffic token; egress rules are refused, not ignored", {
  skip,
}, async () => {
  const sandbox = await Sandbox.create("debian", { network: { allowPublicTraffic: false } });
  try {
    assert.match(sandbox.trafficAccessToken ?? "", /^[0-9a-f]{32}$/);
    await sandbox.files.write("/tmp/echo.pl", ECHO_SERVER);
    let out = "";
    await sandbox.commands.run("perl /tmp/echo.pl", {
      background: true,
      timeoutMs: 0,
      onStdout: (d) => {
        out += d;
      },
    });
    await eventually("the server to listen", async () => (out.includes("listening") ? true : undefined));
    const host = sandbox.getHost(8080);
    assert.equal((await request(t.url, { headers: { host } })).status, 403);
    const wrong = await request(t.url, { headers: { host, "e2b-traffic-access-token": "0".repeat(32) } });
    assert.equal(wrong.status, 403);
    const right = await request(t.url, {
      headers: { host, "e2b-traffic-access-token": sandbox.trafficAccessToken ?? "" },
    });
    assert.equal(right.body, "hello");
  } finally {
    await sandbox.kill();
  }
  await assert.rejects(Sandbox.create("debian", { network: { denyOut: ["0.0.0.0/0"] } } as never), /not implemented/);
});
