import os from "node:os";

/** Why a process ended: see `ProcessExit.reason`. */
export type ExitReasonName = "exited" | "signaled" | "timeout" | "idle_timeout" | "oom_killed";

/** How a process ended, as the agent reported it. */
export interface ProcessExit {
  /**
   * Why it ended: it exited, a signal killed it, the agent killed it for its timeout or
   * idle timeout, or the kernel's OOM killer did. Set for commands (not for PTYs).
   */
  reason?: ExitReasonName;
  /** The agent's one-line account of the end, when it gave one. */
  detail?: string;
  /** Exit code; -1 when the process died from a signal. */
  exitCode: number;
  /** Signal name (`SIGKILL`) when the process died from a signal. */
  signal?: string;
  /** The agent's status text, like `exit status 3` or `signal: killed`. */
  status: string;
  /** The agent's error text, if any (envd sends `exit status 3` for a non-zero exit). */
  error?: string;
}

/** Go's os.ProcessState texts (envd's status format) for the usual signals. */
const SIGNAL_DESCRIPTIONS: Record<string, string> = {
  hangup: "SIGHUP",
  interrupt: "SIGINT",
  quit: "SIGQUIT",
  "illegal instruction": "SIGILL",
  "trace/breakpoint trap": "SIGTRAP",
  aborted: "SIGABRT",
  "bus error": "SIGBUS",
  "floating point exception": "SIGFPE",
  killed: "SIGKILL",
  "user defined signal 1": "SIGUSR1",
  "segmentation fault": "SIGSEGV",
  "user defined signal 2": "SIGUSR2",
  "broken pipe": "SIGPIPE",
  "alarm clock": "SIGALRM",
  terminated: "SIGTERM",
};

/** The signal name in a status like `signal: killed` or `signal: SIGKILL`, if any. */
export function signalFromStatus(status: string): string | undefined {
  const match = /^signal:\s*(.+)$/i.exec(status.trim());
  if (!match) return undefined;
  const text = match[1].trim();
  const upper = text.toUpperCase();
  const named = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  if (named in os.constants.signals) return named;
  if (/^\d+$/.test(text)) {
    const found = Object.entries(os.constants.signals).find(([, n]) => n === Number(text));
    if (found) return found[0];
  }
  return SIGNAL_DESCRIPTIONS[text.toLowerCase()] ?? text;
}

/** The shell convention for a process's exit: its code, or 128 + the signal number. */
export function shellExitCode(exit: ProcessExit): number {
  if (exit.signal) {
    const number = os.constants.signals[exit.signal as keyof typeof os.constants.signals];
    return number ? 128 + number : 255;
  }
  return exit.exitCode >= 0 ? exit.exitCode : 255;
}
