import { constants } from "node:os";

/** How a process ended, in the words envd (Go's os.ProcessState) uses on the wire. */
export interface ExitStatus {
  /** The exit code; -1 when a signal ended the process. */
  exitCode: number;
  /** True when the process called exit(), false when a signal killed it. */
  exited: boolean;
  /** "exit status 2", "signal: killed". */
  status: string;
  /** What Go's cmd.Wait() returns: unset for a clean exit, else the same words as status. */
  error?: string;
  /** The signal that ended the process ("SIGKILL"), when one did. Not on envd's wire. */
  signal?: NodeJS.Signals;
}

/** Go's names for Linux signals (syscall.Signal.String()), which clients may match on. */
const GO_SIGNAL_NAMES: Record<number, string> = {
  1: "hangup",
  2: "interrupt",
  3: "quit",
  4: "illegal instruction",
  5: "trace/breakpoint trap",
  6: "aborted",
  7: "bus error",
  8: "floating point exception",
  9: "killed",
  10: "user defined signal 1",
  11: "segmentation fault",
  12: "user defined signal 2",
  13: "broken pipe",
  14: "alarm clock",
  15: "terminated",
  16: "stack fault",
  17: "child exited",
  18: "continued",
  19: "stopped (signal)",
  20: "stopped",
  21: "stopped (tty input)",
  22: "stopped (tty output)",
  23: "urgent I/O condition",
  24: "CPU time limit exceeded",
  25: "file size limit exceeded",
  26: "virtual timer expired",
  27: "profiling timer expired",
  28: "window changed",
  29: "I/O possible",
  30: "power failure",
  31: "bad system call",
};

/**
 * Describes a finished process from what Node reports: an exit code, or the signal
 * (a name from child_process, a number from node-pty) that killed it.
 */
export function exitStatus(code: number | null, signal: NodeJS.Signals | number | null | undefined): ExitStatus {
  const signo = typeof signal === "string" ? constants.signals[signal] : signal;
  if (signo) {
    const status = `signal: ${GO_SIGNAL_NAMES[signo] ?? `signal ${signo}`}`;
    const name = typeof signal === "string" ? signal : signalName(signo);
    return { exitCode: -1, exited: false, status, error: status, ...(name ? { signal: name } : {}) };
  }
  const exitCode = code ?? 0;
  const status = `exit status ${exitCode}`;
  return exitCode === 0 ? { exitCode, exited: true, status } : { exitCode, exited: true, status, error: status };
}

/** The name of a signal number ("SIGTERM" for 15), if Node knows it. */
export function signalName(signo: number): NodeJS.Signals | undefined {
  for (const [name, number] of Object.entries(constants.signals)) {
    if (number === signo) return name as NodeJS.Signals;
  }
  return undefined;
}
