import type { ExecEvent, ExecEvent_Dropped, ExecEvent_Started, Exit } from "@tether/protocol/exec";
import { OutputStream } from "@tether/protocol/exec";

type StreamName = "stdout" | "stderr" | "pty";

const NAMES: Record<number, StreamName> = {
  [OutputStream.STDOUT]: "stdout",
  [OutputStream.STDERR]: "stderr",
  [OutputStream.PTY]: "pty",
};

/** What an Exec stream delivered, gathered for assertions. */
export interface ExecSeen {
  kinds: string[];
  started: ExecEvent_Started | undefined;
  output: Record<StreamName, Buffer[]>;
  /** Offset of each output event, per stream, in arrival order. */
  offsets: Record<StreamName, { offset: bigint; length: number }[]>;
  dropped: ExecEvent_Dropped[];
  exit: Exit | undefined;
}

/** Reads an Exec Start or Attach stream step by step. */
export class ExecReader {
  readonly seen: ExecSeen = {
    kinds: [],
    started: undefined,
    output: { stdout: [], stderr: [], pty: [] },
    offsets: { stdout: [], stderr: [], pty: [] },
    dropped: [],
    exit: undefined,
  };
  private readonly iterator: AsyncIterator<ExecEvent>;

  constructor(stream: AsyncIterable<ExecEvent>) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  text(stream: StreamName): string {
    return Buffer.concat(this.seen.output[stream]).toString("utf8");
  }

  bytes(stream: StreamName): Buffer {
    return Buffer.concat(this.seen.output[stream]);
  }

  async step(): Promise<boolean> {
    const { value, done } = await this.iterator.next();
    if (done) return false;
    const event = value.event;
    this.seen.kinds.push(event.case ?? "empty");
    switch (event.case) {
      case "started":
        this.seen.started = event.value;
        break;
      case "output": {
        const name = NAMES[event.value.stream];
        this.seen.output[name].push(Buffer.from(event.value.data));
        this.seen.offsets[name].push({ offset: event.value.offset, length: event.value.data.length });
        break;
      }
      case "dropped":
        this.seen.dropped.push(event.value);
        break;
      case "exit":
        this.seen.exit = event.value;
        break;
    }
    return true;
  }

  async started(): Promise<ExecEvent_Started> {
    while (!this.seen.started) {
      if (!(await this.step())) throw new Error(`stream ended before started: ${this.seen.kinds.join(",")}`);
    }
    return this.seen.started;
  }

  async until(stream: StreamName, pattern: RegExp): Promise<string> {
    while (!pattern.test(this.text(stream))) {
      if (!(await this.step()))
        throw new Error(`stream ended before ${stream} matched ${pattern}: ${this.text(stream)}`);
    }
    return this.text(stream);
  }

  async rest(): Promise<ExecSeen> {
    while (await this.step()) {}
    return this.seen;
  }

  /** Stops reading: the server sees the client go away. */
  async stop(): Promise<void> {
    await this.iterator.return?.();
  }
}

export function collectExec(stream: AsyncIterable<ExecEvent>): Promise<ExecSeen> {
  return new ExecReader(stream).rest();
}

export { isGoneOrZombie, waitGone } from "../../src/agent-process.js";
