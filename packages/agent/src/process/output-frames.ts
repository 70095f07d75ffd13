import type { OutputKind } from "./output-log.js";

/**
 * Hand-encoded heads of the one message per output chunk, for RawMessageWriter: the
 * 5-byte envelope and every protobuf byte before the chunk's data, which is the last
 * field of the message, so head + data is exactly what protobuf-es would encode
 * (test/output-frames.test.ts checks it against toBinary). Written by hand because
 * protobuf-es can only encode a whole message into a fresh buffer, copying the chunk.
 */

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const tag = (field: number, wire: number) => (field << 3) | wire;

/** tether.v1 OutputStream numbers. */
const EXEC_STREAM: Record<OutputKind, number> = { stdout: 1, stderr: 2, pty: 3 };
/** envd ProcessEvent.DataEvent: the oneof field each stream's bytes go in. */
const DATA_FIELD: Record<OutputKind, number> = { stdout: 1, stderr: 2, pty: 3 };

/** Head of a tether.v1 ExecEvent{output: Output{stream, offset, data}} message. */
export function execOutputHead(kind: OutputKind, offset: number, dataLength: number): Uint8Array {
  const stream = EXEC_STREAM[kind];
  // Output: stream (1), offset (2; proto3 leaves a zero out), data (3).
  const outputPrefix = 2 + (offset > 0 ? 1 + varintSize(offset) : 0) + 1 + varintSize(dataLength);
  const outputLength = outputPrefix + dataLength;
  const messageLength = 1 + varintSize(outputLength) + outputLength;
  const head = Buffer.allocUnsafe(5 + messageLength - dataLength);
  let at = envelope(head, messageLength);
  head[at++] = tag(2, WIRE_LEN);
  at = putVarint(head, at, outputLength);
  head[at++] = tag(1, WIRE_VARINT);
  head[at++] = stream;
  if (offset > 0) {
    head[at++] = tag(2, WIRE_VARINT);
    at = putVarint(head, at, offset);
  }
  head[at++] = tag(3, WIRE_LEN);
  putVarint(head, at, dataLength);
  return head;
}

/** Head of an envd StartResponse/ConnectResponse{event: ProcessEvent{data: DataEvent{<kind>: data}}}. */
export function processDataHead(kind: OutputKind, dataLength: number): Uint8Array {
  const dataEventLength = 1 + varintSize(dataLength) + dataLength;
  const eventLength = 1 + varintSize(dataEventLength) + dataEventLength;
  const messageLength = 1 + varintSize(eventLength) + eventLength;
  const head = Buffer.allocUnsafe(5 + messageLength - dataLength);
  let at = envelope(head, messageLength);
  head[at++] = tag(1, WIRE_LEN);
  at = putVarint(head, at, eventLength);
  head[at++] = tag(2, WIRE_LEN);
  at = putVarint(head, at, dataEventLength);
  head[at++] = tag(DATA_FIELD[kind], WIRE_LEN);
  putVarint(head, at, dataLength);
  return head;
}

/** Writes the envelope (flags 0: an uncompressed message) and returns where the message starts. */
function envelope(head: Buffer, messageLength: number): number {
  head[0] = 0;
  head.writeUInt32BE(messageLength, 1);
  return 5;
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    size++;
  }
  return size;
}

/** Writes an unsigned varint of any safe integer (offsets pass 2^32). */
function putVarint(buf: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    buf[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buf[at++] = value;
  return at;
}
