import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ACCESS_TOKEN_HEADER, TUNNEL_PATH, TUNNEL_WRITE_PATH } from "@tether/protocol";
import { Tunnel, type TunnelRequest, type TunnelWriteRequest } from "@tether/protocol/tunnel";
import { Agent, AuthenticationError, PortUnreachableError, type TunnelStream } from "../src/index.js";
import { startTestAgent, type TestAgent, TRANSPORTS } from "./support/agent.js";
import { type AgentProcess, sampleMax, spawnAgentProcess } from "./support/agent-process.js";

const GIB = 1 << 30;
/** tetherd's RSS may not grow past this while a tunnel moves data through it. */
const RSS_LIMIT = 250 << 20;

/** A loopback server for one test; closed with `close()`. */
async function serve(onConnection: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function readAllFrom(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("error", reject);
  });
}

/** Hashes what a stream gives until its end, without keeping it. */
function readToEnd(stream: NodeJS.ReadableStream): Promise<{ received: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    let received = 0;
    stream.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
    });
    stream.once("end", () => resolve({ received, sha256: hash.digest("hex") }));
    stream.once("error", reject);
  });
}

/** Writes `total` bytes of on-the-fly data (a random block, each copy stamped with its index), honouring backpressure. */
async function writeGenerated(
  stream: NodeJS.WritableStream,
  total: number,
  hash = createHash("sha256"),
): Promise<string> {
  const block = randomBytes(1 << 20);
  for (let sent = 0, i = 0; sent < total; sent += block.length, i++) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32BE(i, 0);
    const part = chunk.subarray(0, Math.min(chunk.length, total - sent));
    hash.update(part);
    if (!stream.write(part)) await new Promise((resolve) => stream.once("drain", resolve));
  }
  stream.end();
  return hash.digest("hex");
}

let t: TestAgent;
let echo: Awaited<ReturnType<typeof serve>>;
before(async () => {
  t = await startTestAgent({ accessToken: "sdk-tunnel-token" });
  echo = await serve((socket) => socket.pipe(socket));
});
after(async () => {
  await echo.close();
  await t.close();
});

for (const transport of TRANSPORTS) {
  describe(`tunnel over ${transport}`, () => {
    test("echo round trip; end() half-closes and the echo's end arrives", async () => {
      const tunnel = await t.client(transport).tunnel(echo.port);
      assert.deepEqual(tunnel.target, { address: "127.0.0.1", port: echo.port });
      const received = readAllFrom(tunnel);
      tunnel.write("hello ");
      tunnel.end("tunnel");
      assert.equal((await received).toString(), "hello tunnel");
    });

    test("the sandbox side closing its half first: eof arrives, the client can still send", async () => {
      let serverGot: Promise<Buffer> | undefined;
      const server = await serve((socket) => {
        socket.end("bye");
        serverGot = readAllFrom(socket);
      });
      try {
        const tunnel = await t.client(transport).tunnel(server.port);
        assert.equal((await readAllFrom(tunnel)).toString(), "bye");
        tunnel.end("late words");
        await new Promise((resolve) => tunnel.once("close", resolve));
        assert.equal((await serverGot)?.toString(), "late words");
      } finally {
        await server.close();
      }
    });

    test("a refused port is a PortUnreachableError naming it", async () => {
      const closed = await serve(() => {});
      const port = closed.port;
      await closed.close();
      await assert.rejects(t.client(transport).tunnel(port), (err: Error) => {
        assert.ok(err instanceof PortUnreachableError, `${err.name}: ${err.message}`);
        assert.equal(err.port, port);
        assert.match(err.message, new RegExp(`refused.*127\\.0\\.0\\.1:${port}`));
        return true;
      });
    });
  });
}

test("the sandbox side resetting the connection destroys the tunnel with an error", async () => {
  const server = await serve((socket) => socket.once("data", () => socket.resetAndDestroy()));
  try {
    const tunnel = await t.client("tcp").tunnel(server.port);
    tunnel.write("reset me");
    const err = await new Promise<Error>((resolve) => tunnel.once("error", resolve));
    assert.match(err.message, /reset/);
  } finally {
    await server.close();
  }
});

/** A plain Connect client of the agent's Tunnel service, as another or an older SDK would be. */
function rawTunnelClient() {
  const transport = createConnectTransport({
    baseUrl: t.agent.url as string,
    httpVersion: "2",
    useBinaryFormat: true,
    interceptors: [
      (next) => (req) => {
        req.header.set(ACCESS_TOKEN_HEADER, "sdk-tunnel-token");
        return next(req);
      },
    ],
  });
  return createClient(Tunnel, transport);
}

test("a client from before `Write` (bytes on the Open stream, with acks) still gets its echo and acks", async () => {
  const payload = randomBytes(300 << 10);
  async function* requests(): AsyncGenerator<TunnelRequest> {
    yield {
      $typeName: "tether.v1.TunnelRequest",
      message: {
        case: "open",
        value: { $typeName: "tether.v1.TunnelOpen", port: echo.port, host: "", acks: true, separateUpload: false },
      },
    };
    yield { $typeName: "tether.v1.TunnelRequest", message: { case: "data", value: payload } };
  }
  const received: Buffer[] = [];
  let written = 0n;
  let uploadId: string | undefined;
  for await (const response of rawTunnelClient().open(requests())) {
    const message = response.message;
    if (message.case === "opened") uploadId = message.value.uploadId;
    if (message.case === "data") received.push(Buffer.from(message.value));
    if (message.case === "written") written += message.value;
  }
  assert.equal(uploadId, "");
  assert.ok(Buffer.concat(received).equals(payload));
  assert.equal(written, BigInt(payload.length));
});

test("a Write naming no open tunnel is NotFound", async () => {
  async function* requests(): AsyncGenerator<TunnelWriteRequest> {
    yield { $typeName: "tether.v1.TunnelWriteRequest", message: { case: "uploadId", value: "no-such-tunnel" } };
    yield { $typeName: "tether.v1.TunnelWriteRequest", message: { case: "data", value: Buffer.from("lost") } };
  }
  await assert.rejects(rawTunnelClient().write(requests()), (err: Error) => {
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, Code.NotFound);
    return true;
  });
});

/**
 * An HTTP/2 front for the agent that knows no raw tunnel endpoints, as an agent from before
 * them answers (404 "no such endpoint"); everything else goes through to the agent, each
 * client session on a session of its own (as tether serve's proxy does).
 */
async function olderAgentFront(agentUrl: string): Promise<{ url: string; close(): Promise<void> }> {
  const upstreams = new Set<http2.ClientHttp2Session>();
  const server = http2.createServer();
  server.on("session", (session) => {
    const upstream = http2.connect(agentUrl);
    upstream.on("error", () => {});
    upstreams.add(upstream);
    session.once("close", () => upstream.close());
    session.on("stream", (stream, headers) => {
      const path = String(headers[":path"]);
      if (path.startsWith(`${TUNNEL_PATH}?`) || path.startsWith(`${TUNNEL_WRITE_PATH}?`)) {
        stream.respond({ ":status": 404, "content-type": "application/json" });
        stream.end(JSON.stringify({ message: "no such endpoint", code: 404 }));
        return;
      }
      const forwarded: http2.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(headers)) {
        if (!name.startsWith(":") || name === ":method" || name === ":path") forwarded[name] = value;
      }
      const request = upstream.request(forwarded);
      request.on("response", (answer) => {
        const { ":status": status, ...rest } = answer;
        stream.respond({ ":status": status, ...rest });
        request.pipe(stream);
      });
      request.on("error", () => stream.destroy());
      stream.on("error", () => request.destroy());
      stream.pipe(request);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        for (const upstream of upstreams) upstream.destroy();
        server.close(() => resolve());
      }),
  };
}

test("towards an agent without the raw endpoints, tunnels fall back to tether.v1.Tunnel", async () => {
  const front = await olderAgentFront(t.agent.url as string);
  const client = new Agent({ url: front.url, accessToken: "sdk-tunnel-token" });
  try {
    for (let i = 0; i < 2; i++) {
      const tunnel = await client.tunnel(echo.port);
      assert.equal(tunnel.raw, false);
      const payload = randomBytes(3 << 20);
      const received = readAllFrom(tunnel);
      tunnel.end(payload);
      assert.ok((await received).equals(payload));
    }
  } finally {
    client.close();
    await front.close();
  }
});

test("the raw endpoints refuse a request without the token, or with a wrong one, and connect nowhere", async () => {
  let connections = 0;
  const target = await serve(() => {
    connections++;
  });
  const session = http2.connect(t.agent.url as string);
  try {
    const statusOf = (path: string, headers: http2.OutgoingHttpHeaders) =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": path, ...headers });
        stream.once("response", (answer) => resolve(Number(answer[":status"])));
        stream.once("error", reject);
        stream.resume();
        stream.end();
      });
    const open = `${TUNNEL_PATH}?port=${target.port}`;
    assert.equal(await statusOf(open, {}), 401);
    assert.equal(await statusOf(open, { [ACCESS_TOKEN_HEADER]: "not-the-token" }), 401);
    assert.equal(await statusOf(`${TUNNEL_WRITE_PATH}?id=anything`, {}), 401);
    await assert.rejects(t.client("tcp", { accessToken: "not-the-token" }).tunnel(target.port), (err: Error) => {
      assert.ok(err instanceof AuthenticationError, `${err.name}: ${err.message}`);
      return true;
    });
    // The right token does connect, so the count above means something.
    assert.equal(await statusOf(open, { [ACCESS_TOKEN_HEADER]: "sdk-tunnel-token" }), 200);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(connections, 1);
  } finally {
    session.destroy();
    await target.close();
  }
});

test("bad ports are refused before anything is sent", async () => {
  await assert.rejects(t.client("tcp").tunnel(0), /not a TCP port/);
  await assert.rejects(t.client("tcp").tunnel(70000), /not a TCP port/);
});

describe("tunnels through a tetherd child process", () => {
  let agent: AgentProcess;
  let client: Agent;
  before(async () => {
    agent = await spawnAgentProcess();
    client = new Agent({ url: agent.url as string });
  });
  after(async () => {
    client.close();
    await agent.stop();
  });

  test("1 GiB through an echo server: sha256 of what went up and what came back agree", async (ctx) => {
    const rss = sampleMax(() => agent.rss());
    const tunnel = await client.tunnel(echo.port);
    const back = readToEnd(tunnel);
    const sent = await writeGenerated(tunnel, GIB);
    const { received, sha256 } = await back;
    const peak = rss.stop();
    ctx.diagnostic(`agent RSS peak ${(peak / 2 ** 20).toFixed(0)} MiB`);
    assert.equal(received, GIB);
    assert.equal(sha256, sent);
    assert.ok(peak < RSS_LIMIT, `agent RSS peaked at ${(peak / 2 ** 20).toFixed(0)} MiB`);
  });

  test("64 MiB both ways at once over the raw path: sha256 of each direction checked at its far end", async () => {
    let serverSent: Promise<string> | undefined;
    let serverGot: Promise<string> | undefined;
    const server = await serve((socket) => {
      const hash = createHash("sha256");
      socket.on("data", (c: Buffer) => hash.update(c));
      serverGot = new Promise((resolve) => socket.once("end", () => resolve(hash.digest("hex"))));
      serverSent = writeGenerated(socket, 64 << 20);
    });
    try {
      const tunnel = await client.tunnel(server.port);
      assert.equal(tunnel.raw, true);
      const back = readToEnd(tunnel);
      const sent = await writeGenerated(tunnel, 64 << 20);
      const { received, sha256 } = await back;
      assert.equal(received, 64 << 20);
      assert.equal(sha256, await serverSent);
      assert.equal(await serverGot, sent);
    } finally {
      await server.close();
    }
  });

  test("1 GiB each way, checked at the far end: upload hashed by the server, download hashed by the client", async () => {
    const upload = await serve((socket) => {
      const hash = createHash("sha256");
      socket.on("data", (c: Buffer) => hash.update(c));
      socket.once("end", () => socket.end(hash.digest("hex")));
    });
    let downloadSent: Promise<string> | undefined;
    const download = await serve((socket) => {
      downloadSent = writeGenerated(socket, GIB);
    });
    try {
      const up = await client.tunnel(upload.port);
      const answer = readAllFrom(up);
      const sentHash = await writeGenerated(up, GIB);
      assert.equal((await answer).toString(), sentHash);

      const down = await client.tunnel(download.port);
      const hash = createHash("sha256");
      for await (const chunk of down as AsyncIterable<Buffer>) hash.update(chunk);
      assert.equal(hash.digest("hex"), await downloadSent);
    } finally {
      await upload.close();
      await download.close();
    }
  });

  test("a slow reader holds the sandbox side back: agent RSS stays bounded", async (ctx) => {
    let serverWritten = 0;
    const source = await serve((socket) => {
      const block = Buffer.alloc(1 << 20, 1);
      const pump = () => {
        while (!socket.destroyed) {
          serverWritten += block.length;
          if (!socket.write(block)) return void socket.once("drain", pump);
        }
      };
      pump();
    });
    const rss = sampleMax(() => agent.rss());
    const tunnel: TunnelStream = await client.tunnel(source.port);
    let read = 0;
    try {
      // 3 s at 64 KiB every 10 ms: about 20 MB read, far slower than the source could write.
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, 10));
        const chunk: Buffer | null = tunnel.read(64 << 10);
        if (chunk) read += chunk.length;
      }
      const peak = rss.stop();
      const inFlight = serverWritten - read;
      ctx.diagnostic(
        `read ${(read / 2 ** 20).toFixed(0)} MiB, source wrote ${(serverWritten / 2 ** 20).toFixed(0)} MiB, agent RSS peak ${(peak / 2 ** 20).toFixed(0)} MiB`,
      );
      assert.ok(read > 0);
      // Buffers along the way (socket buffers, HTTP/2 windows of 16 MiB per stream) hold a bounded amount.
      assert.ok(inFlight < 128 << 20, `${inFlight} bytes in flight`);
      assert.ok(peak < RSS_LIMIT, `agent RSS peaked at ${(peak / 2 ** 20).toFixed(0)} MiB`);
    } finally {
      tunnel.destroy();
      await source.close();
    }
  });

  test("a slow sink holds the client back: write() reports a full tunnel and agent RSS stays bounded", async (ctx) => {
    let sinkRead = 0;
    const sink = await serve((socket) => {
      socket.pause();
      const timer = setInterval(() => {
        const chunk: Buffer | null = socket.read(64 << 10);
        if (chunk) sinkRead += chunk.length;
      }, 10);
      socket.once("close", () => clearInterval(timer));
    });
    const rss = sampleMax(() => agent.rss());
    const tunnel = await client.tunnel(sink.port);
    let written = 0;
    let full = 0;
    const block = Buffer.alloc(1 << 20, 2);
    try {
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        written += block.length;
        if (!tunnel.write(block)) {
          full++;
          await Promise.race([
            new Promise((resolve) => tunnel.once("drain", resolve)),
            new Promise((resolve) => setTimeout(resolve, until - Date.now()).unref()),
          ]);
        }
      }
      const peak = rss.stop();
      ctx.diagnostic(
        `wrote ${(written / 2 ** 20).toFixed(0)} MiB, sink read ${(sinkRead / 2 ** 20).toFixed(0)} MiB, agent RSS peak ${(peak / 2 ** 20).toFixed(0)} MiB`,
      );
      assert.ok(full > 0, "write() returned false");
      assert.ok(written - sinkRead < 128 << 20, `${written - sinkRead} bytes in flight`);
      assert.ok(peak < RSS_LIMIT, `agent RSS peaked at ${(peak / 2 ** 20).toFixed(0)} MiB`);
    } finally {
      tunnel.destroy();
      await sink.close();
    }
  });
});
