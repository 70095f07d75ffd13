import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Exec, ExecEventSchema, OutputStream } from "@tether/protocol/exec";
import { Process, StartResponseSchema } from "@tether/protocol/process";
import { execOutputHead, processDataHead } from "../src/process/output-frames.js";
import type { OutputKind } from "../src/process/output-log.js";
import { startTestAgent, type TestAgent } from "./support/agent.js";
import { collectExec } from "./support/exec-events.js";
import { collect } from "./support/process-events.js";

const STREAMS: Record<OutputKind, OutputStream> = {
  stdout: OutputStream.STDOUT,
  stderr: OutputStream.STDERR,
  pty: OutputStream.PTY,
};
const KINDS: OutputKind[] = ["stdout", "stderr", "pty"];
// Around every varint width change, and offsets past 32 bits.
const LENGTHS = [1, 2, 100, 127, 128, 129, 16383, 16384, 65536, 2_097_151, 2_097_152];
const OFFSETS = [0, 1, 127, 128, 300, 65536, 2 ** 31, 2 ** 32 + 5, 2 ** 35, 2 ** 52 + 3];

function enveloped(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function payload(length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 7) & 0xff;
  return data;
}

describe("hand-encoded output messages match protobuf-es byte for byte", () => {
  test("tether.v1 ExecEvent output", () => {
    for (const kind of KINDS) {
      for (const length of LENGTHS) {
        const data = payload(length);
        for (const offset of OFFSETS) {
          const want = enveloped(
            toBinary(
              ExecEventSchema,
              create(ExecEventSchema, {
                event: { case: "output", value: { stream: STREAMS[kind], offset: BigInt(offset), data } },
              }),
            ),
          );
          const got = Buffer.concat([execOutputHead(kind, offset, length), data]);
          assert.ok(got.equals(want), `${kind} offset ${offset} length ${length}`);
        }
      }
    }
  });

  test("envd StartResponse/ConnectResponse data event", () => {
    for (const kind of KINDS) {
      for (const length of LENGTHS) {
        const data = payload(length);
        const want = enveloped(
          toBinary(
            StartResponseSchema,
            create(StartResponseSchema, {
              event: { event: { case: "data", value: { output: { case: kind, value: data } } } },
            }),
          ),
        );
        const got = Buffer.concat([processDataHead(kind, length), data]);
        assert.ok(got.equals(want), `${kind} length ${length}`);
      }
    }
  });
});

describe("output reaches every protocol and codec intact", () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(() => t.close());

  // Megabytes on stdout (many chunks, several log limits' worth) around lines on stderr.
  const LINES = 300_000;
  const script = `echo first >&2; seq 1 ${LINES}; echo last >&2`;
  const expected = `${Array.from({ length: LINES }, (_, i) => i + 1).join("\n")}\n`;
  // No compression offered (as our SDK does) unless named: the agent writes binary output itself then.
  const plain = { acceptCompression: [] };
  const transports: Record<string, () => Transport> = {
    "Connect binary, HTTP/2": () =>
      createConnectTransport({ baseUrl: t.url, ...plain, httpVersion: "2", useBinaryFormat: true }),
    "Connect binary, HTTP/1.1": () =>
      createConnectTransport({ baseUrl: t.url, ...plain, httpVersion: "1.1", useBinaryFormat: true }),
    "Connect binary, gzip offered": () =>
      createConnectTransport({ baseUrl: t.url, httpVersion: "2", useBinaryFormat: true }),
    "Connect JSON, HTTP/2": () =>
      createConnectTransport({ baseUrl: t.url, ...plain, httpVersion: "2", useBinaryFormat: false }),
    gRPC: () => createGrpcTransport({ ...plain, baseUrl: t.url }),
    "gRPC, gzip offered": () => createGrpcTransport({ baseUrl: t.url }),
    "gRPC-Web, HTTP/2": () =>
      createGrpcWebTransport({ baseUrl: t.url, ...plain, httpVersion: "2", useBinaryFormat: true }),
    "gRPC-Web, HTTP/1.1": () =>
      createGrpcWebTransport({ baseUrl: t.url, ...plain, httpVersion: "1.1", useBinaryFormat: true }),
  };

  for (const [name, transport] of Object.entries(transports)) {
    test(`${name}: Exec output with contiguous offsets, and envd output`, async () => {
      const exec = createClient(Exec, transport());
      const seen = await collectExec(exec.start({ process: { cmd: "/bin/sh", args: ["-c", script] } }));
      assert.equal(seen.exit?.exitCode, 0);
      assert.equal(Buffer.concat(seen.output.stdout).toString(), expected);
      assert.equal(Buffer.concat(seen.output.stderr).toString(), "first\nlast\n");
      let at = 0n;
      for (const { offset, length } of seen.offsets.stdout) {
        assert.equal(offset, at);
        at += BigInt(length);
      }
      assert.ok(seen.offsets.stdout.length > 1, "the output came in several chunks");

      const processClient = createClient(Process, transport());
      const envd = await collect(processClient.start({ process: { cmd: "/bin/sh", args: ["-c", script] } }));
      assert.equal(envd.end?.exitCode, 0);
      assert.equal(envd.stdout, expected);
      assert.equal(envd.stderr, "first\nlast\n");
    });
  }
});
