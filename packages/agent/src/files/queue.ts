/**
 * An unbounded-by-design but capped async queue: producers `push` from callbacks, one
 * consumer iterates. Used to turn watcher callbacks into a server stream.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private failure: unknown;

  /** Items beyond `limit` drop the oldest, so a stalled reader cannot exhaust memory. */
  constructor(private readonly limit = 10_000) {}

  /** How many items were dropped because the reader fell behind. */
  dropped = 0;

  push(item: T): void {
    if (this.ended) return;
    this.items.push(item);
    if (this.items.length > this.limit) {
      this.items.shift();
      this.dropped++;
    }
    this.wake();
  }

  /** Ends the iteration after the queued items; with an error, the iteration throws it. */
  end(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = err;
    this.wake();
  }

  /** Takes everything queued now. */
  drain(): T[] {
    return this.items.splice(0, this.items.length);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        yield this.items.shift() as T;
        continue;
      }
      if (this.ended) {
        if (this.failure !== undefined) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}
