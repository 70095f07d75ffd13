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
}
