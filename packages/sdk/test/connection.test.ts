import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent, AgentUnavailableError, AuthenticationError, CommandExitError, connect } from "../src/index.js";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";

let t: TestAgent;
before(async () => {
  t = await startTestAgent({ accessToken: "right-token" });
});
after(() => t.close());

for (const transport of TRANSPORTS) {
  describe(`connection over ${transport}`, () => {
    test("connect checks health and the client works", async () => {
      const agent = await connect(t.target(transport));
      try {
        const result = await agent.commands.run(["echo", "ok"]);
        assert.equal(result.stdout, "ok\n");
      } finally {
        agent.close();
      }
    });

    test("a wrong token gives AuthenticationError, for RPCs and files alike", async () => {
      const agent = t.client(transport, { accessToken: "wrong-token" });
      await assert.rejects(agent.commands.run(["true"]), AuthenticationError);
      await assert.rejects(agent.files.read("/etc/hostname"), AuthenticationError);
      await assert.rejects(agent.files.write(path.join(t.dir, "x"), "x"), AuthenticationError);
    });
  });
}

describe("a long-lived connection", () => {
  // Node's HTTP/2 server closes a session whose client reset about a thousand streams in
  // a burst (its rapid-reset defence). A client that reset each finished command's stream
  // lost its connection after that many commands, with "Session closed with error code 2".
  test("runs commands, every tenth in a PTY, well past a thousand", async () => {
    const agent = await connect(t.target("unix"));
    try {
      for (let i = 0; i < 1100; i++) {
        if (i % 10 === 0) {
          const pty = await agent.pty.create({ argv: ["true"], cols: 80, rows: 24, onData: () => {} });
          assert.equal((await pty.wait()).exitCode, 0);
        } else {
          await agent.commands.run(["true"]);
        }
      }
      const result = await agent.commands.run(["echo", "still here"]);
      assert.equal(result.stdout, "still here\n");
    } finally {
      agent.close();
    }
  });
});

describe("a connection whose calls are cancelled in a burst", () => {
  // A cancel is a stream reset, and Node's HTTP/2 server closes a session whose client reset
  // about a thousand streams in a burst (GOAWAY INTERNAL_ERROR, its rapid-reset defence).
  // The calls sent next then failed ("Session closed with error code 2"), as did every call
  // in flight on the session.
  test("survives 5,000 cancels: calls sent next go through, a call in flight keeps going", async () => {
    const agent = await connect(t.target("tcp"));
    try {
      const sleeper = await agent.commands.start(["sleep", "600"]);
      const inFlight = sleeper.wait();
      inFlight.catch(() => {});
      const followers = [];
      for (let i = 0; i < 5000; i += 250) {
        followers.push(...(await Promise.all(Array.from({ length: 250 }, () => agent.commands.connect(sleeper.pid)))));
      }
      for (const follower of followers) follower.disconnect();
      // Sent at once, right after the burst: neither may fail for it.
      const [listed, echoed] = await Promise.all([agent.commands.list(), agent.commands.run(["echo", "still here"])]);
      assert.ok(listed.some((p) => p.pid === sleeper.pid));
      assert.equal(echoed.stdout, "still here\n");
      await agent.commands.kill(sleeper.pid);
      await assert.rejects(inFlight, (err: unknown) => err instanceof CommandExitError && err.signal === "SIGKILL");
      for (const follower of followers) await assert.rejects(follower.wait(), /cancelled/);
    } finally {
      agent.close();
    }
  });
});

describe("unreachable agents", () => {
  test("a socket path nobody listens on gives AgentUnavailableError", async () => {
    await assert.rejects(connect({ socket: path.join(t.dir, "absent.sock") }), (err: unknown) => {
      assert.ok(err instanceof AgentUnavailableError);
      assert.match(err.message, /absent\.sock/);
      return true;
    });
  });

  test("an agent that goes away mid-command gives AgentUnavailableError", async () => {
    const { startAgent } = await import("@tether/agent");
    const doomed = await startAgent({ port: 0, logLevel: "silent" });
    const agent = new Agent({ url: doomed.url as string });
    try {
      const handle = await agent.commands.start(["sleep", "30"]);
      const waiting = handle.wait();
      await doomed.close();
      await assert.rejects(waiting, AgentUnavailableError);
    } finally {
      agent.close();
    }
  });

  test("a closed port gives AgentUnavailableError", async () => {
    const other = await startTestAgentAndClose();
    await assert.rejects(connect({ url: other }), AgentUnavailableError);
  });
});

async function startTestAgentAndClose(): Promise<string> {
  const { startAgent } = await import("@tether/agent");
  const agent = await startAgent({ port: 0, logLevel: "silent" });
  const url = agent.url as string;
  await agent.close();
  return url;
}
