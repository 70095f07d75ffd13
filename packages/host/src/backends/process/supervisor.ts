/**
 * The supervisor of a `local` or `bwrap` sandbox: a small detached node process that
 * outlives the `tether` call which started it. It starts the sandbox's agent (tetherd,
 * or bwrap running tetherd) from `launch.json`, writes the agent's stdout and stderr to
 * `output.log` in the Engine API's multiplexed framing (so one reader serves every
 * backend), passes SIGTERM on, and records how the agent ended in `exit.json`.
 * Node builtins only: it stays resident for the sandbox's whole life.
 *
 * Usage: node supervisor.js SANDBOX_DIR
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { currentProcess } from "../../process-identity.js";
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
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
}

function supervise(dir: string): void {
  const plan = JSON.parse(readFileSync(path.join(dir, LAUNCH_FILE), "utf8")) as LaunchPlan;
  const out = openSync(path.join(dir, OUTPUT_FILE), "a", 0o600);
  const frame = (stream: 1 | 2, data: Buffer) => {
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(data.length, 4);
    writeSync(out, Buffer.concat([header, data]));
  };
  const finish = (record: ExitRecord) => {
    writeAtomically(path.join(dir, EXIT_FILE), `${JSON.stringify(record)}\n`);
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
    const record: SupervisorRecord = { ...currentProcess(), agentPid: child.pid };
    writeAtomically(path.join(dir, SUPERVISOR_FILE), `${JSON.stringify(record)}\n`);
  }

  // The agent passes SIGTERM on to what it supervises; the backend escalates to SIGKILL itself.
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  // Detached from any terminal: a hang-up or Ctrl-C meant for the caller is not for us.
  process.on("SIGINT", () => {});
  process.on("SIGHUP", () => {});
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: supervisor.js SANDBOX_DIR\n");
  process.exit(2);
}
supervise(dir);
