import type { ProcessEvent, ProcessEvent_EndEvent } from "@tether/protocol/process";

/** What a process stream delivered, gathered for assertions. */
export interface CollectedEvents {
  /** Event kinds in arrival order, e.g. ["start", "data", "end"]. */
  kinds: string[];
  pid: number | undefined;
  stdout: string;
  stderr: string;
  pty: string;
  keepalives: number;
  end: ProcessEvent_EndEvent | undefined;
}

/**
 * Reads a Start or Connect response stream step by step, so a test can act between
 * events (send input once a prompt appeared) and then collect the rest.
 */
export class ProcessEventReader {
  readonly seen: CollectedEvents = {
    kinds: [],
    pid: undefined,
    stdout: "",
    stderr: "",
    pty: "",
    keepalives: 0,
    end: undefined,
  };
  private readonly iterator: AsyncIterator<{ event?: ProcessEvent }>;
  private readonly decoder = { stdout: new TextDecoder(), stderr: new TextDecoder(), pty: new TextDecoder() };

  constructor(stream: AsyncIterable<{ event?: ProcessEvent }>) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  /** Reads one event; false once the stream is over. */
  async step(): Promise<boolean> {
    const { value, done } = await this.iterator.next();
    if (done) return false;
    const event = value.event?.event;
    this.seen.kinds.push(event?.case ?? "empty");
    switch (event?.case) {
      case "start":
        this.seen.pid = event.value.pid;
        break;
      case "data": {
        const out = event.value.output;
        if (out.case) this.seen[out.case] += this.decoder[out.case].decode(out.value, { stream: true });
        break;
      }
      case "keepalive":
        this.seen.keepalives++;
        break;
      case "end":
        this.seen.end = event.value;
        break;
    }
    return true;
  }

  /** Reads up to and including the start event, returning the pid. */
  async started(): Promise<number> {
    while (this.seen.pid === undefined) {
      if (!(await this.step())) throw new Error(`stream ended before start: ${this.seen.kinds.join(",")}`);
    }
    return this.seen.pid;
  }

  /** Reads until the given output (stdout, stderr or pty) matches. */
  async until(kind: "stdout" | "stderr" | "pty", pattern: RegExp): Promise<string> {
    while (!pattern.test(this.seen[kind])) {
      if (!(await this.step())) {
        throw new Error(`stream ended before ${kind} matched ${pattern}: ${JSON.stringify(this.seen)}`);
      }
    }
    return this.seen[kind];
  }

  /** Reads to the end of the stream. */
  async rest(): Promise<CollectedEvents> {
    while (await this.step()) {}
    return this.seen;
  }
}

/** Collects a whole stream. */
export function collect(stream: AsyncIterable<{ event?: ProcessEvent }>): Promise<CollectedEvents> {
  return new ProcessEventReader(stream).rest();
}
