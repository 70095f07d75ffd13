import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type Process, type ProcessInput, StreamInputRequestSchema } from "@tether/protocol/process";

/** What can be fed to a process's stdin (or a PTY's input). */
export type InputSource = string | Uint8Array | AsyncIterable<Uint8Array | string>;

/** Large chunks are split so no single message nears the agent's 16 MiB limit. */
const MAX_INPUT_CHUNK = 1 << 20;

function* split(data: Uint8Array): Generator<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += MAX_INPUT_CHUNK) {
    yield data.subarray(offset, offset + MAX_INPUT_CHUNK);
  }
}

export function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? Buffer.from(data) : data;
}

async function* chunksOf(source: InputSource): AsyncGenerator<Uint8Array> {
  if (typeof source === "string" || source instanceof Uint8Array) {
    yield* split(toBytes(source));
    return;
  }
  for await (const piece of source) yield* split(toBytes(piece));
}

export function processInput(kind: "stdin" | "pty", data: Uint8Array): ProcessInput["input"] {
  return { case: kind, value: data };
}

/** Streams a whole source into a process over one StreamInput call. */
export async function streamInput(
  client: Client<typeof Process>,
  pid: number,
  kind: "stdin" | "pty",
  source: InputSource,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<void> {
  async function* requests() {
    yield create(StreamInputRequestSchema, {
      event: { case: "start", value: { process: { selector: { case: "pid", value: pid } } } },
    });
    for await (const data of chunksOf(source)) {
      yield create(StreamInputRequestSchema, {
        event: { case: "data", value: { input: { input: processInput(kind, data) } } },
      });
    }
  }
  await client.streamInput(requests(), { headers, signal });
}
