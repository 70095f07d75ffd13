import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ACCESS_TOKEN_HEADER } from "@tether/protocol";
import { Process } from "@tether/protocol/process";
import { AGENT_CONTAINER_PORT, type BuiltBundle, DEFAULT_MOUNT_POINT } from "../src/index.js";
import { testBundle } from "./support/bundle.js";
import { dockerSkipReason, runContainer, type TestContainer } from "./support/docker.js";

const TOKEN = "bundle-test-token";

interface TestImage {
  image: string;
  /** A command that exists in the image, and what it prints. */
  hello: { cmd: string; args: string[]; stdout: string };
  /** Whether the image has `cat` and `env` to inspect processes the agent starts. */
  inspectable: boolean;
}

const IMAGES: TestImage[] = [
  {
    image: "tether-test/busybox",
    hello: { cmd: "echo", args: ["hello", "busybox"], stdout: "hello busybox\n" },
    inspectable: true,
  },
  // Linked against the image's musl: the agent's glibc must not leak into it.
  {
    image: "tether-test/musl",
    hello: { cmd: "/bin/hello-musl", args: ["musl"], stdout: "hello musl\n" },
    inspectable: true,
  },
  {
    image: "tether-test/debian",
    hello: { cmd: "echo", args: ["hello", "debian"], stdout: "hello debian\n" },
    inspectable: true,
  },
  {
    image: "tether-test/noshell",
    hello: { cmd: "/hello", args: ["noshell"], stdout: "hello noshell\n" },
    inspectable: false,
  },
];

const skip = await dockerSkipReason(IMAGES.map((i) => i.image));

let bundle: BuiltBundle;
const containers: TestContainer[] = [];
before(async () => {
  if (!skip) bundle = await testBundle();
});
after(async () => {
  await Promise.all(containers.map((c) => c.remove()));
});

/** Starts the bundle as the container's entrypoint, exactly as manifest.command says, and waits for health. */
async function startAgentIn(image: string): Promise<{ container: TestContainer; url: string }> {
  const [entrypoint, ...rest] = bundle.command;
  const container = await runContainer([
    "-v",
    `${bundle.dir}:${DEFAULT_MOUNT_POINT}:ro`,
    "--entrypoint",
    entrypoint,
    "-p",
    `127.0.0.1::${AGENT_CONTAINER_PORT}`,
    image,
    ...rest,
    "--host",
    "0.0.0.0",
    "--port",
    String(AGENT_CONTAINER_PORT),
    "--access-token",
    TOKEN,
  ]);
  containers.push(container);
  const url = `http://${await container.hostAddress(AGENT_CONTAINER_PORT)}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if ((await healthStatus(url)) === 204) return { container, url };
    if (!(await container.running()) || Date.now() > deadline) {
      throw new Error(`tetherd in ${image} did not become healthy; its log:\n${await container.logs()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * GET /health with node:http and a timeout. Not fetch: while the agent is still starting, docker's
 * port proxy accepts and drops connections, and Node 20's fetch can then leave its promise pending
 * with nothing keeping the event loop alive, which ends the test run.
 */
function healthStatus(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get(`${url}/health`, { agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

/** Runs one command through the agent's process service and gathers its output. */
async function runProcess(
  url: string,
  cmd: string,
  args: string[] = [],
  options: { pty?: boolean; user?: string } = {},
) {
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "1.1",
    interceptors: [
      (next) => (req) => {
        req.header.set(ACCESS_TOKEN_HEADER, TOKEN);
        if (options.user) req.header.set("authorization", `Basic ${btoa(`${options.user}:`)}`);
        return next(req);
      },
    ],
  });
  const client = createClient(Process, transport);
  let stdout = "";
  let stderr = "";
  let pty = "";
  let exitCode: number | undefined;
  const decoder = new TextDecoder();
  // A user's home may not exist (Debian's nobody has /nonexistent).
  const cwd = options.user ? "/" : "";
  const request = { process: { cmd, args, cwd }, ...(options.pty ? { pty: { size: { cols: 80, rows: 24 } } } : {}) };
  for await (const res of client.start(request)) {
    const event = res.event?.event;
    if (event?.case === "data") {
      const out = event.value.output;
      if (out.case === "stdout") stdout += decoder.decode(out.value);
      if (out.case === "stderr") stderr += decoder.decode(out.value);
      if (out.case === "pty") pty += decoder.decode(out.value);
    } else if (event?.case === "end") {
      exitCode = event.value.exitCode;
    }
  }
  return { stdout, stderr, pty, exitCode };
}

// One visible skipped test, with the reason, when Docker or the images are not there.
if (skip) test("the bundle in each test image", { skip }, () => {});
for (const spec of IMAGES) {
  describe(`the bundle in ${spec.image}`, { skip }, () => {
    let url: string;
    let container: TestContainer;
    before(async () => {
      ({ url, container } = await startAgentIn(spec.image));
    });

    test("spawns pipe children with the bundled @tether/spawn, not Node's fork", async () => {
      // The agent writes its log once it is first idle after starting: wait for the line.
      let logs = "";
      for (const deadline = Date.now() + 5000; Date.now() < deadline; ) {
        logs = await container.logs();
        if (logs.includes("tetherd listening")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(logs, /"spawner":"vfork"/);
    });

    test("runs a command of the image through the process service", async () => {
      const { stdout, stderr, exitCode } = await runProcess(url, spec.hello.cmd, spec.hello.args);
      assert.deepEqual({ stdout, stderr, exitCode }, { stdout: spec.hello.stdout, stderr: "", exitCode: 0 });
    });

    test("runs it in a PTY (node-pty from the bundle)", async () => {
      const { pty, exitCode } = await runProcess(url, spec.hello.cmd, spec.hello.args, { pty: true });
      // The terminal turns \n into \r\n.
      assert.deepEqual({ pty, exitCode }, { pty: spec.hello.stdout.replace("\n", "\r\n"), exitCode: 0 });
    });

    test("runs a PTY command as a non-root user with the bundle's tether-exec-as, not the image's setpriv", async () => {
      // busybox's setpriv (in the busybox and musl images) has no --reuid; noshell has none at all.
      if (spec.inspectable) {
        const { pty, exitCode } = await runProcess(url, "sh", ["-c", "id -u; id -g; id -G"], {
          pty: true,
          user: "nobody",
        });
        assert.deepEqual({ pty, exitCode }, { pty: "65534\r\n65534\r\n65534\r\n", exitCode: 0 });
      } else {
        const { pty, exitCode } = await runProcess(url, spec.hello.cmd, spec.hello.args, { pty: true, user: "65534" });
        assert.deepEqual({ pty, exitCode }, { pty: spec.hello.stdout.replace("\n", "\r\n"), exitCode: 0 });
      }
    });

    test("writes a file with POST /files and reads the same bytes back with GET /files", async () => {
      const bytes = randomBytes(256 * 1024 + 7);
      const path = "/tmp/bundle-round-trip.bin";
      const form = new FormData();
      form.append("file", new Blob([bytes]), path);
      const query = `path=${encodeURIComponent(path)}&username=root`;
      const up = await fetch(`${url}/files?${query}`, {
        method: "POST",
        headers: { [ACCESS_TOKEN_HEADER]: TOKEN },
        body: form,
      });
      assert.equal(up.status, 200, await up.clone().text());
      const down = await fetch(`${url}/files?${query}`, { headers: { [ACCESS_TOKEN_HEADER]: TOKEN } });
      assert.equal(down.status, 200);
      assert.ok(Buffer.from(await down.arrayBuffer()).equals(bytes), "the file read back differs");
    });

    if (spec.inspectable) {
      test("the agent runs on the bundle's libraries and its children on the image's own", async () => {
        const agentMaps = await runProcess(url, "cat", ["/proc/1/maps"]);
        assert.match(agentMaps.stdout, /\/\.tether\/lib\/libc\.so\.6/);
        const childMaps = await runProcess(url, "cat", ["/proc/self/maps"]);
        assert.equal(childMaps.exitCode, 0);
        assert.doesNotMatch(childMaps.stdout, /\/\.tether/);
        const env = await runProcess(url, "env");
        assert.equal(env.exitCode, 0);
        assert.doesNotMatch(env.stdout, /^LD_/m);
        assert.doesNotMatch(env.stdout, /\.tether/);
      });
    }
  });
}
