import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { TETHERD_BIN } from "@tether/agent/paths";
import { removeHome } from "@tether/host";
import { docker, dockerSkipReason } from "./support/cli.js";

const BUSYBOX = "tether-test/busybox";
/** A generous bound on an awaited event (ports are polled every 250 ms). */
const BOUND_MS = 10_000;

const TETHER = fileURLToPath(new URL("../../bin/tether.js", import.meta.url));

/**
 * A scratch TETHER_HOME for this file, and a label on every sandbox it creates so cleanup
 * removes those and nothing else.
 */
const home = {
  dir: mkdtempSync(path.join(os.tmpdir(), "tether-cli-ports-")),
  label: `tether-test.ports=${randomUUID()}`,
};
// Agent bundles are shared by the test files (one directory per content hash), never rebuilt per file.
mkdirSync(path.join(os.tmpdir(), "tether-test-bundles"), { recursive: true });
symlinkSync(path.join(os.tmpdir(), "tether-test-bundles"), path.join(home.dir, "bundle"));
after(async () => {
  const ids = (await docker("ps", "-aq", "--filter", `label=${home.label}`).catch(() => ""))
    .split("\n")
    .filter(Boolean);
  if (ids.length > 0) await docker("rm", "-f", ...ids).catch(() => {});
  await removeHome(home.dir);
});

/** Runs the real `tether` bin with this file's home. */
async function tether(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = new Running(args);
  const [code] = (await once(child.child, "close")) as [number | null];
  return { code, stdout: child.stdout, stderr: child.stderr };
}

/** `tether create --label ... [flags] IMAGE`: the new sandbox's id. */
async function create(image: string, ...flags: string[]): Promise<string> {
  const r = await tether(["create", "--label", home.label, ...flags, image]);
  if (r.code !== 0) throw new Error(`tether create ${image} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

/** A `tether` child kept running (ports --watch, forward), with its output so far. */
class Running {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  constructor(args: string[]) {
    this.child = spawn(process.execPath, [TETHER, ...args], {
      env: { ...process.env, TETHER_HOME: home.dir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout?.setEncoding("utf8").on("data", (t: string) => {
      this.stdout += t;
    });
    this.child.stderr?.setEncoding("utf8").on("data", (t: string) => {
      this.stderr += t;
    });
  }

  /** Waits until stdout matches, within the bound. */
  async waitFor(pattern: RegExp): Promise<RegExpExecArray> {
    const deadline = Date.now() + BOUND_MS;
    for (;;) {
      const match = pattern.exec(this.stdout);
      if (match) return match;
      if (this.child.exitCode !== null) assert.fail(`tether exited (${this.child.exitCode}): ${this.stderr}`);
      if (Date.now() > deadline) assert.fail(`no ${pattern} within ${BOUND_MS} ms in: ${this.stdout}${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Ctrl-C; resolves with the exit code. */
  async interrupt(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    const exited = once(this.child, "exit");
    this.child.kill("SIGINT");
    const [code] = (await exited) as [number | null];
    return code;
  }
}

/** A node process listening on 127.0.0.1 (a free port), answering `reply` to each connection. */
async function startListener(reply: string): Promise<{ port: number; pid: number; stop(): void }> {
  const script = `const s = require("node:net").createServer((c) => c.end(${JSON.stringify(reply)}));
s.listen(0, "127.0.0.1", () => process.stdout.write(s.address().port + "\\n"));`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
  return { port: Number(line.toString().trim()), pid: child.pid as number, stop: () => child.kill("SIGKILL") };
}

/** Connects, half-closes after sending `send`, and returns everything read. */
async function talk(port: number, send = ""): Promise<string> {
  const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  let out = "";
  socket.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  socket.end(send);
  await new Promise<void>((resolve, reject) => {
    socket.once("end", () => resolve());
    socket.once("close", () => resolve());
    socket.once("error", reject);
  });
  return out;
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => {
          body += d;
        });
        res.once("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .once("error", reject);
  });
}

describe("ports and forward against an agent reached directly", () => {
  let agent: ChildProcess;
  let url: string;
  before(async () => {
    agent = spawn(process.execPath, [TETHERD_BIN, "--port", "0", "--log-level", "info"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    url = await new Promise<string>((resolve, reject) => {
      let text = "";
      agent.stderr?.setEncoding("utf8").on("data", (t: string) => {
        text += t;
        const line = text.split("\n").find((l) => l.includes("tetherd listening"));
        if (line) resolve((JSON.parse(line) as { tcp: string }).tcp);
      });
      agent.once("exit", (code) => reject(new Error(`tetherd exited (${code}): ${text}`)));
    });
  });
  after(() => {
    agent.kill("SIGTERM");
  });

  test("tether ports --json and the table show a listener with its pid and command", async () => {
    const listener = await startListener("hi");
    try {
      const json = await tether(["ports", "--agent", url, "--json"]);
      assert.equal(json.code, 0, json.stderr);
      const ports = JSON.parse(json.stdout) as { port: number; pid?: number; command?: string; address: string }[];
      const found = ports.find((p) => p.port === listener.port);
      assert.deepEqual(
        { address: found?.address, pid: found?.pid, command: found?.command },
        { address: "127.0.0.1", pid: listener.pid, command: "node" },
      );
      const table = await tether(["ports", "--agent", url]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^PROTO\s+ADDRESS\s+PORT\s+PID\s+COMMAND$/m);
      assert.match(
        table.stdout,
        new RegExp(`^tcp\\s+127\\.0\\.0\\.1\\s+${listener.port}\\s+${listener.pid}\\s+.*node -e`, "m"),
      );
    } finally {
      listener.stop();
    }
  });

  test("tether ports --watch --json: a snapshot, then opened and closed; Ctrl-C ends it with 0", async () => {
    const watch = new Running(["ports", "--agent", url, "--watch", "--json"]);
    try {
      await watch.waitFor(/"type":"snapshot"/);
      const listener = await startListener("watched");
      await watch.waitFor(new RegExp(`"type":"opened","port":\\{[^}]*"port":${listener.port}[,}]`));
      listener.stop();
      await watch.waitFor(new RegExp(`"type":"closed","port":\\{[^}]*"port":${listener.port}[,}]`));
      const opened = watch.stdout
        .split("\n")
        .find((l) => l.includes('"opened"') && l.includes(`"port":${listener.port}`));
      assert.equal((JSON.parse(opened as string) as { port: { pid: number } }).port.pid, listener.pid);
    } finally {
      assert.equal(await watch.interrupt(), 0);
    }
  });

  test("tether forward: a printed free port, each connection tunnelled (half-close too), refused ports reported", async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
    const echoPort = (echo.address() as net.AddressInfo).port;
    const forward = new Running(["forward", "--agent", url, String(echoPort)]);
    try {
      const [, local] = await forward.waitFor(/Forwarding 127\.0\.0\.1:(\d+) -> port (\d+)/);
      assert.notEqual(Number(local), 0);
      assert.equal(await talk(Number(local), "one"), "one");
      const results = await Promise.all(["a", "b", "c"].map((s) => talk(Number(local), s.repeat(100_000))));
      assert.deepEqual(
        results.map((r) => r.length),
        [100_000, 100_000, 100_000],
      );
    } finally {
      assert.equal(await forward.interrupt(), 0);
    }
    // Nothing listens there any more: the local connection is dropped and the reason printed.
    await new Promise((resolve) => echo.close(resolve));
    const refused = new Running(["forward", "--agent", url, `0:${echoPort}`]);
    try {
      const [, local] = await refused.waitFor(/Forwarding 127\.0\.0\.1:(\d+)/);
      await talk(Number(local)).catch(() => "");
      const deadline = Date.now() + BOUND_MS;
      while (!refused.stderr.includes("refused") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.match(refused.stderr, new RegExp(`connection refused: nothing listens on 127\\.0\\.0\\.1:${echoPort}`));
    } finally {
      assert.equal(await refused.interrupt(), 0);
    }
  });

  test("usage errors exit 2 and say what is wrong", async () => {
    const noSpec = await tether(["forward", "--agent", url]);
    assert.equal(noSpec.code, 2);
    assert.match(noSpec.stderr, /missing \[LOCAL:\]REMOTE/);
    const badSpec = await tether(["forward", "--agent", url, "80:http"]);
    assert.equal(badSpec.code, 2);
    assert.match(badSpec.stderr, /is not \[LOCAL:\]REMOTE/);
    const noTarget = await tether(["ports"]);
    assert.equal(noTarget.code, 2);
    assert.match(noTarget.stderr, /sandbox id, or --agent URL or --socket PATH/);
    const both = await tether(["ports", "some-id", "--agent", url]);
    assert.equal(both.code, 2);
  });
});

const skip = await dockerSkipReason([BUSYBOX]);

describe("ports and forward against Docker sandboxes", { skip }, () => {
  /** busybox httpd on loopback only, daemonised (so exec returns), serving one file from /tmp. */
  async function startHttpd(id: string, text: string): Promise<void> {
    const script = `echo ${text} > /tmp/index.html && httpd -p 127.0.0.1:8080 -h /tmp`;
    const r = await tether(["exec", id, "--", "sh", "-c", script]);
    assert.equal(r.code, 0, r.stderr);
  }

  test("network none: tether ports ID shows the loopback service; tether forward ID reaches it", async () => {
    const id = await create(BUSYBOX);
    await startHttpd(id, "through the tunnel");
    const deadline = Date.now() + BOUND_MS;
    let ports: { address: string; port: number; command?: string; pid?: number }[] = [];
    while (Date.now() < deadline) {
      const r = await tether(["ports", id, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      ports = JSON.parse(r.stdout);
      if (ports.some((p) => p.port === 8080)) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const httpd = ports.find((p) => p.port === 8080);
    assert.equal(httpd?.address, "127.0.0.1");
    assert.equal(httpd?.command, "httpd");
    assert.ok(httpd?.pid, "the pid inside the sandbox");
    // network none: the agent exposes nothing, and listens on no TCP port of its own.
    assert.deepEqual(
      ports.filter((p) => p.port !== 8080),
      [],
    );

    const forward = new Running(["forward", id, "0:8080"]);
    try {
      const [, local] = await forward.waitFor(/Forwarding 127\.0\.0\.1:(\d+) -> port 8080 in sandbox/);
      const res = await httpGet(`http://127.0.0.1:${local}/index.html`);
      assert.equal(res.status, 200);
      assert.equal(res.body, "through the tunnel\n");
    } finally {
      assert.equal(await forward.interrupt(), 0);
    }
  });

  test("bridge network: the loopback-only service is re-exposed at the container's address", async () => {
    const id = await create(BUSYBOX, "--network", "bridge");
    await startHttpd(id, "re-exposed");
    const container = (await docker("ps", "-q", "--filter", `label=tether.sandbox=${id}`)).trim();
    const ip = (
      await docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)
    ).trim();
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/);
    const deadline = Date.now() + BOUND_MS;
    let body = "";
    while (Date.now() < deadline) {
      body = await httpGet(`http://${ip}:8080/index.html`).then(
        (r) => r.body,
        () => "",
      );
      if (body) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(body, "re-exposed\n");
    const r = await tether(["ports", id, "--json"]);
    const ports = JSON.parse(r.stdout) as { address: string; port: number; proxyFor?: string }[];
    assert.deepEqual(
      ports.filter((p) => p.proxyFor).map((p) => [p.address, p.port, p.proxyFor]),
      [[ip, 8080, "127.0.0.1:8080"]],
    );
  });
});
