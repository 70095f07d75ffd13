import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { exec, process as processPb } from "@tether/protocol";
import { Agent, AgentUnavailableError, ConnectionLostError } from "../src/index.js";

// An HTTP/2 peer that closes sessions the way Node's server does under its rapid-reset
// defence (GOAWAY INTERNAL_ERROR, then the session is gone), at chosen calls: the real
// agent does it only after a thousand resets in a burst, which the SDK now avoids sending.
// Each session of this server answers normally, except as the test path says.
let server: http2.Http2Server;
let url: string;
let sessions = 0;
/** What the next session does with the call it kills: the last stream id its GOAWAY names. */
let kill: { path: string; lastStreamId: (streamId: number) => number } | undefined;

before(async () => {
  server = http2.createServer();
  server.on("session", () => sessions++);
  server.on("stream", (stream, headers) => {
    const path = headers[":path"];
    if (kill && path === kill.path) {
      const lastStreamId = kill.lastStreamId(stream.id ?? 0);
      kill = undefined;
      const answer = path === "/tether.v1.Exec/Start";
      if (answer) {
        // The call is under way (its pid sent) when its session dies.
        stream.respond({ ":status": 200, "content-type": "application/connect+proto" });
        stream.write(envelope(toBinary(exec.ExecEventSchema, create(exec.ExecEventSchema, started(4242)))));
      }
      setTimeout(() => {
        stream.session?.goaway(http2.constants.NGHTTP2_INTERNAL_ERROR, lastStreamId);
        stream.session?.destroy();
      }, 50);
      return;
    }
    if (path === "/process.Process/List") {
      stream.respond({ ":status": 200, "content-type": "application/proto" });
      stream.end(Buffer.from(toBinary(processPb.ListResponseSchema, create(processPb.ListResponseSchema, {}))));
      return;
    }
    stream.respond({ ":status": 404 });
    stream.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("a session the agent closes with GOAWAY", () => {
  test("a call the agent never saw (above the GOAWAY's last stream) is sent again on a new session", async () => {
    const agent = new Agent({ url });
    try {
      const before = sessions;
      kill = { path: "/process.Process/List", lastStreamId: (id) => id - 2 };
      assert.deepEqual(await agent.commands.list(), []);
      assert.equal(sessions - before, 2, "the call went to a second session");
    } finally {
      agent.close();
    }
  });

  test("a streaming call the agent was running fails with ConnectionLostError; the next call works", async () => {
    const agent = new Agent({ url });
    try {
      kill = { path: "/tether.v1.Exec/Start", lastStreamId: (id) => id };
      const handle = await agent.commands.start(["sleep", "600"]);
      assert.equal(handle.pid, 4242);
      await assert.rejects(handle.wait(), (err: unknown) => {
        assert.ok(err instanceof ConnectionLostError && err instanceof AgentUnavailableError, String(err));
        assert.match(err.message, /GOAWAY INTERNAL_ERROR/);
        return true;
      });
      assert.deepEqual(await agent.commands.list(), []);
    } finally {
      agent.close();
    }
  });
});

function started(pid: number) {
  return { event: { case: "started" as const, value: { pid } } };
}

function envelope(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}
