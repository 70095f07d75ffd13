/**
 * The supervisor of a `local` or `bwrap` sandbox: a small detached node process that
 * outlives the `tether` call which started it. It starts the sandbox's agent (tetherd,
 * or bwrap running tetherd) from `launch.json`, writes the agent's stdout and stderr to
 * `output.log` in the Engine API's multiplexed framing (so one reader serves every
 * backend; each frame stamped with the time it was read, see TIMED_FRAME), passes
 * SIGTERM on, and records how the agent ended in `exit.json`. Node builtins only (and
 * log-stream's framing, which imports nothing): it stays resident for the sandbox's
 * whole life. A write that fails (TETHER_HOME full) never ends it: output is dropped, and
 * how much is noted in the log once it can be written again; the agent must never run
 * on unsupervised.
 *
 * Usage: node supervisor.js SANDBOX_DIR
 */
import { spawn } from "node:child_process";
import {
  closeSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import net from "node:net";
import path from "node:path";
import { currentProcess, processIdentity } from "../../process-identity.js";
import { timedFrame } from "../docker/log-stream.js";
import {
  EXIT_FILE,
  type ExitRecord,
  LAUNCH_FILE,
  type LaunchPlan,
  OUTPUT_FILE,
  SUPERVISOR_FILE,
  type SupervisorRecord,
} from "./sandbox-files.js";

function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

function supervise(dir: string): void {
  // stderr is supervisor.log, on the same disk: a note that cannot be written is not a reason to die.
  process.stderr.on("error", () => {});
  const plan = JSON.parse(readFileSync(path.join(dir, LAUNCH_FILE), "utf8")) as LaunchPlan;
  const out = openSync(path.join(dir, OUTPUT_FILE), "a", 0o600);
  let lost = 0;
  let lostBecause = "";
  const append = (stream: 1 | 2, data: Buffer) => {
    // Stamped as read, so the sandbox's logs can say when each line came (and be paged by time).
    const bytes = timedFrame(stream, data, Date.now());
    // Whole frames only: a partial write (the disk filling up mid-frame) is cut back off.
    const before = fstatSync(out).size;
    try {
      if (writeSync(out, bytes) < bytes.length) {
        // Internal, never a user's: shaped as the errno error a failed write gives, so the lost-output note names ENOSPC.
        throw Object.assign(new Error("short write: no space left on device"), { code: "ENOSPC" });
      }
    } catch (err) {
      ftruncateSync(out, before);
      throw err;
    }
  };
  const frame = (stream: 1 | 2, data: Buffer) => {
    try {
      if (lost > 0) {
        append(2, Buffer.from(`tether supervisor: ${lost} bytes of output were lost: ${lostBecause}\n`));
        lost = 0;
      }
      append(stream, data);
    } catch (err) {
      if (lost === 0) process.stderr.write(`tether supervisor: output is being dropped: ${(err as Error).message}\n`);
      lost += data.length;
      lostBecause = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    }
  };
  const finish = (record: ExitRecord) => {
    try {
      writeAtomically(path.join(dir, EXIT_FILE), `${JSON.stringify(record)}\n`);
    } catch (err) {
      // Without exit.json the sandbox reads as stopped: the supervisor is gone either way.
      process.stderr.write(`tether supervisor: cannot record the exit: ${(err as Error).message}\n`);
    }
    closeSync(out);
    process.exit(0);
  };

  const [file, ...args] = plan.argv;
  const child = spawn(file, args, { env: plan.env, cwd: plan.cwd, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (data: Buffer) => frame(1, data));
  child.stderr.on("data", (data: Buffer) => frame(2, data));
  child.once("error", (err) => {
    frame(2, Buffer.from(`tether supervisor: cannot start ${file}: ${err.message}\n`));
    finish({ code: null, signal: null, at: Date.now(), error: err.message });
  });
  // 'close' comes after both pipes are drained, so the log is complete when exit.json appears.
  child.once("close", (code, signal) => finish({ code, signal, at: Date.now() }));
  if (child.pid !== undefined) {
    const agent = processIdentity(child.pid);
    const record: SupervisorRecord = { ...currentProcess(), agentPid: child.pid, ...(agent ? { agent } : {}) };
    try {
      writeAtomically(path.join(dir, SUPERVISOR_FILE), `${JSON.stringify(record)}\n`);
    } catch (err) {
      // Unrecorded, the agent could not be found to stop: it does not run at all.
      process.stderr.write(`tether supervisor: cannot record the sandbox's processes: ${(err as Error).message}\n`);
      child.kill("SIGKILL");
    }
  }

  if (plan.relay) relay(plan.relay);

  // The agent passes SIGTERM on to what it supervises; the backend escalates to SIGKILL itself.
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  // Detached from any terminal: a hang-up or Ctrl-C meant for the caller is not for us.
  process.on("SIGINT", () => {});
  process.on("SIGHUP", () => {});
}

/** Serves `socket`, each connection piped to 127.0.0.1:`port` (see LaunchPlan.relay). */
function relay({ socket, port }: { socket: string; port: number }): void {
  rmSync(socket, { force: true });
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  server.on("error", (err) => process.stderr.write(`tether supervisor: relay ${socket}: ${err.message}\n`));
  // The socket is made 0600 before anyone can connect: only the host's user reaches the agent.
  const umask = process.umask(0o177);
  server.listen(socket, () => process.umask(umask));
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: supervisor.js SANDBOX_DIR\n");
  process.exit(2);
}
supervise(dir);
