/** One line of an Init's log: a step's header, or a line a step (or its tool) printed. */
export interface InitLogLine {
  step: string;
  text: string;
  header: boolean;
}

/** Where the steps of an Init report what they do. */
export interface InitLog {
  /** Starts a step: sends its header line. */
  step(title: string): void;
  /** A line within the current step. */
  line(text: string): void;
}

/**
 * Lines queued by a running Init for the RPC stream that sends them: the job pushes,
 * the stream pulls; `end` or `fail` finishes the stream after the queued lines.
 */
export class InitLogQueue<T> {
  private readonly items: T[] = [];
  private done = false;
  private error: unknown;
  private wake: (() => void) | undefined;

  push(item: T): void {
    this.items.push(item);
    this.notify();
  }

  end(): void {
    this.done = true;
    this.notify();
  }

  fail(err: unknown): void {
    this.error = err ?? new Error("init failed");
    this.done = true;
    this.notify();
  }

  async *drain(): AsyncGenerator<T> {
    for (;;) {
      while (this.items.length > 0) yield this.items.shift() as T;
      if (this.done) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** Splits output chunks into lines; git's progress uses \r, so that ends a line too. */
export class LineSplitter {
  private rest = "";
  private readonly decoder = new TextDecoder();

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Uint8Array): void {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
    const parts = text.split(/\r\n|\r|\n/);
    this.rest = parts.pop() ?? "";
    for (const part of parts) if (part.trim()) this.onLine(part);
  }

  flush(): void {
    const last = this.rest + this.decoder.decode();
    this.rest = "";
    if (last.trim()) this.onLine(last);
  }
}
