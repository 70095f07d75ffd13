import { AgentProtocolError } from "../errors.js";
import type { ProcessExit } from "./status.js";

/**
 * What a process's event stream gives, however it is spelled on the wire (envd's Process
 * events, tether.v1's Exec events): its pid once it started, its exit once it ended.
 * `read` consumes the stream; an error from it rejects both promises, mapped by `mapError`.
 */
export abstract class EventReader<Event> {
  readonly pid: Promise<number>;
  readonly exit: Promise<ProcessExit>;
  /** Set by `read` when the end event arrived. */
  protected ended = false;
  protected resolvePid!: (pid: number) => void;
  private rejectPid!: (err: unknown) => void;

  protected constructor(events: AsyncIterable<Event>, mapError: (err: unknown) => Error) {
    this.pid = new Promise<number>((resolve, reject) => {
      this.resolvePid = resolve;
      this.rejectPid = reject;
    });
    // `read` first awaits the stream, so a subclass's fields are set before it uses them.
    this.exit = this.read(events).catch((err: unknown) => {
      const mapped = mapError(err);
      this.rejectPid(mapped);
      throw mapped;
    });
    // Callers may await only one of the two; neither should become an unhandled rejection.
    this.pid.catch(() => {});
    this.exit.catch(() => {});
  }

  /** True once the end event arrived. */
  get hasEnded(): boolean {
    return this.ended;
  }

  /** Reads the stream to its end event, resolving the pid on the way. */
  protected abstract read(events: AsyncIterable<Event>): Promise<ProcessExit>;

  /**
   * Hands `events` to `handle` one by one until it returns the process's end; the rest of
   * the stream (only the call's end-of-stream message is left) is then read in the
   * background, not cancelled. Leaving a `for await` early resets the HTTP/2 stream, and
   * Node's HTTP/2 server closes a session whose client reset about a thousand streams in a
   * burst (its defence against rapid-reset floods): a client that ran that many commands
   * on one connection lost it ("Session closed with error code 2"). An error still cancels;
   * a stream that ends without the `endEvent` is an error.
   */
  protected async untilEnd(
    events: AsyncIterable<Event>,
    endEvent: string,
    handle: (event: Event) => ProcessExit | undefined | Promise<ProcessExit | undefined>,
  ): Promise<ProcessExit> {
    const iterator = events[Symbol.asyncIterator]();
    try {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        const end = await handle(next.value);
        if (end) {
          void drain(iterator);
          return end;
        }
      }
    } catch (err) {
      await iterator.return?.().catch(() => {});
      throw err;
    }
    throw new AgentProtocolError(`the agent closed the process stream without an ${endEvent} event`);
  }
}

/** Reads an iterator to its end, ignoring what it yields and how it fails. */
async function drain(iterator: AsyncIterator<unknown>): Promise<void> {
  try {
    while (!(await iterator.next()).done) {}
  } catch {
    // The call's outcome is known; a late error changes nothing.
  }
}
