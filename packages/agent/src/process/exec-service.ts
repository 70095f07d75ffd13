import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import {
  Exec,
  type ExecEventSchema,
  ExitReason,
  type ExitSchema,
  type Offsets as OffsetsMessage,
  OutputStream,
  type ProcessRef,
  type ProcessStatusSchema,
  type StartRequest,
} from "@tether/protocol/exec";
import { type AgentContext, requestUser } from "../context.js";
import { RawMessageWriter } from "../rpc/raw-messages.js";
import type { AgentService } from "../rpc/service.js";
import { childCredentials } from "./credentials.js";
import { planLaunch } from "./launch.js";
import { execOutputHead } from "./output-frames.js";
import { MAX_LOG_LIMIT, type Offsets, type OutputKind, ZERO_OFFSETS } from "./output-log.js";
import { keepaliveMs } from "./service.js";
import { parseSignalName } from "./signals.js";
import type { DirectOutput, Subscription } from "./subscription.js";
import type { ProcessTable } from "./table.js";
import { type ExecControls, type ExitReasonName, type ProcessEnd, TrackedProcess } from "./tracked.js";

type ExecEventInit = MessageInitShape<typeof ExecEventSchema>;
type ExitInit = MessageInitShape<typeof ExitSchema>;

/** setTimeout's ceiling (about 24.8 days); longer limits would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_KEY_LENGTH = 256;

const STREAMS: Record<OutputKind, OutputStream> = {
  stdout: OutputStream.STDOUT,
  stderr: OutputStream.STDERR,
  pty: OutputStream.PTY,
};

const REASONS: Record<ExitReasonName, ExitReason> = {
  exited: ExitReason.EXITED,
  signaled: ExitReason.SIGNALED,
  timeout: ExitReason.TIMEOUT,
  idle_timeout: ExitReason.IDLE_TIMEOUT,
  oom_killed: ExitReason.OOM_KILLED,
};

/**
 * `tether.v1.Exec`: exec control beyond envd (any signal, group signals, timeouts, exit
 * reasons, output replay, idempotent starts) over the same process table as envd's
 * Process service.
 */
export function createExecService(ctx: AgentContext, table: ProcessTable): AgentService {
  return {
    register(router) {
      router.service(Exec, {
        async *start(req, context) {
          const controls = execControls(req);
          const user = requestUser(ctx, context.requestHeader);
          const spec = planLaunch(req, user, ctx.state, await childCredentials(ctx.users, user, req.pty !== undefined));
          const follow = { blocking: !req.lossy, keepaliveMs: keepaliveMs(context) };
          const create = () => {
            table.checkTagFree(spec.tag);
            return new TrackedProcess(spec, controls);
          };
          // No await between looking the key up and claiming it: one key, one process.
          const { proc, existing } =
            controls.key === undefined ? { proc: create(), existing: false } : table.claimKey(controls.key, create);
          if (existing) {
            checkSameCommand(proc, req, controls.key as string);
            yield* events(proc.subscribe(ZERO_OFFSETS, follow), proc, true, context);
            return;
          }
          const sub = proc.subscribe(ZERO_OFFSETS, follow);
          try {
            await proc.spawn();
          } catch (err) {
            sub.close();
            throw err;
          }
          table.add(proc);
          ctx.log.debug(
            { pid: proc.pid, cmd: spec.config.cmd, key: controls.key, user: user.name },
            "process started (exec)",
          );
          yield* events(sub, proc, false, context);
        },

        async *attach(req, context) {
          const proc = findProcess(table, req.process);
          const from = req.liveOnly ? proc.log.offsets : offsetsOf(req.from);
          const sub = proc.subscribe(from, { blocking: !req.lossy, keepaliveMs: keepaliveMs(context) });
          yield* events(sub, proc, true, context);
        },

        async signal(req) {
          const signal = parseSignalName(req.signal);
          const proc = findProcess(table, req.process);
          if (!proc.running) {
            throw new ConnectError(`process ${describe(proc)} is not running`, Code.NotFound);
          }
          proc.signal(signal, req.group);
          return {};
        },

        async list() {
          return { processes: table.all().map(processStatus) };
        },
      });
    },

    async close() {
      // The shared table is emptied by the Process service's close.
    },
  };
}

/** Validates the exec-only fields of a start, before anything happens. */
function execControls(req: StartRequest): ExecControls {
  const controls: ExecControls = {
    timeoutMs: milliseconds("timeout_ms", req.timeoutMs),
    idleTimeoutMs: milliseconds("idle_timeout_ms", req.idleTimeoutMs),
    killGraceMs: milliseconds("kill_grace_ms", req.killGraceMs),
  };
  if (req.logLimitBytes > BigInt(MAX_LOG_LIMIT)) {
    throw new ConnectError(
      `log_limit_bytes ${req.logLimitBytes} is over the maximum of ${MAX_LOG_LIMIT} bytes per stream`,
      Code.InvalidArgument,
    );
  }
  if (req.logLimitBytes > 0n) controls.logLimit = Number(req.logLimitBytes);
  if (req.key !== undefined) {
    if (req.key.length === 0 || req.key.length > MAX_KEY_LENGTH) {
      throw new ConnectError(`key must be 1 to ${MAX_KEY_LENGTH} characters`, Code.InvalidArgument);
    }
    controls.key = req.key;
  }
  return controls;
}

function milliseconds(field: string, value: bigint): number | undefined {
  if (value === 0n) return undefined;
  if (value > BigInt(MAX_TIMER_MS)) {
    throw new ConnectError(`${field} ${value} is too large (at most ${MAX_TIMER_MS} ms)`, Code.InvalidArgument);
  }
  return Number(value);
}

/** A reused key must name the same command: anything else is a client bug worth reporting. */
function checkSameCommand(proc: TrackedProcess, req: StartRequest, key: string): void {
  const want = [req.process?.cmd, ...(req.process?.args ?? [])];
  const have = [proc.config.cmd, ...proc.config.args];
  if (want.length !== have.length || want.some((arg, i) => arg !== have[i])) {
    throw new ConnectError(
      `key "${key}" already names a process running ${JSON.stringify(have)}, not ${JSON.stringify(want)}`,
      Code.AlreadyExists,
    );
  }
}

function findProcess(table: ProcessTable, ref: ProcessRef | undefined): TrackedProcess {
  const r = ref?.ref;
  if (r?.case === "key") return table.findKey(r.value);
  if (r?.case === "pid" || r?.case === "tag") return table.find({ selector: r });
  throw new ConnectError("process (pid, tag or key) is required", Code.InvalidArgument);
}

function describe(proc: TrackedProcess): string {
  if (proc.hasSpawned) return String(proc.pid);
  return `with key "${proc.key}"`;
}

function offsetsOf(message: OffsetsMessage | undefined): Offsets {
  if (!message) return { ...ZERO_OFFSETS };
  return { stdout: Number(message.stdout), stderr: Number(message.stderr), pty: Number(message.pty) };
}

function offsetsMessage(offsets: Offsets) {
  return { stdout: BigInt(offsets.stdout), stderr: BigInt(offsets.stderr), pty: BigInt(offsets.pty) };
}

function exitMessage(end: ProcessEnd): ExitInit {
  return {
    reason: REASONS[end.reason],
    exitCode: end.status.exitCode,
    signal: end.status.signal ?? "",
    status: end.status.status,
    message: end.message,
    offsets: offsetsMessage(end.offsets),
  };
}

function processStatus(proc: TrackedProcess): MessageInitShape<typeof ProcessStatusSchema> {
  const end = proc.end;
  return {
    pid: proc.pid,
    tag: proc.tag,
    key: proc.key,
    config: proc.config,
    running: proc.running,
    offsets: offsetsMessage(proc.log.offsets),
    firstAvailable: offsetsMessage(proc.log.firstAvailable),
    ...(end ? { exit: exitMessage(end) } : {}),
  };
}

/** Turns a subscription's updates into Exec events. */
async function* events(sub: Subscription, proc: TrackedProcess, existing: boolean, context: HandlerContext) {
  const writer = RawMessageWriter.for(context);
  const direct: DirectOutput | undefined = writer && { writer, head: execOutputHead };
  for await (const update of sub.updates(context.signal, direct)) {
    let event: ExecEventInit["event"];
    switch (update.case) {
      case "start":
        event = {
          case: "started",
          value: { pid: update.pid, existing, key: proc.key, logLimitBytes: BigInt(proc.log.limit) },
        };
        break;
      case "data":
        event = {
          case: "output",
          value: { stream: STREAMS[update.kind], offset: BigInt(update.offset), data: update.data },
        };
        break;
      case "dropped":
        event = {
          case: "dropped",
          value: { stream: STREAMS[update.kind], from: BigInt(update.from), to: BigInt(update.to) },
        };
        break;
      case "end":
        event = { case: "exit", value: exitMessage(update.end) };
        break;
      default:
        event = { case: "keepalive", value: {} };
        break;
    }
    yield { event };
  }
}
