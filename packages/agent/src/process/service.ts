import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { KEEPALIVE_INTERVAL_HEADER } from "@tether/protocol/constants";
import { Process, type ProcessEventSchema, type ProcessInput, Signal } from "@tether/protocol/process";
import { type AgentContext, requestUser } from "../context.js";
import { throwIfDeadlinePassed } from "../rpc/deadline.js";
import { RawMessageWriter } from "../rpc/raw-messages.js";
import type { AgentService } from "../rpc/service.js";
import { childCredentials } from "./credentials.js";
import { planLaunch, ptySize } from "./launch.js";
import { processDataHead } from "./output-frames.js";
import { ZERO_OFFSETS } from "./output-log.js";
import type { DirectOutput, Subscription } from "./subscription.js";
import type { ProcessTable } from "./table.js";
import { TrackedProcess } from "./tracked.js";

type ProcessEventInit = MessageInitShape<typeof ProcessEventSchema>;

/**
 * envd's `process.Process` service: start, watch, feed and signal the sandbox's
 * processes. The table is shared with tether.v1.Exec.
 */
export function createProcessService(ctx: AgentContext, table: ProcessTable): AgentService {
  return {
    register(router) {
      router.service(Process, {
        async list() {
          return {
            processes: table.running().map((p) => ({ config: p.config, pid: p.pid, tag: p.tag })),
          };
        },

        async *start(req, context) {
          const user = requestUser(ctx, context.requestHeader);
          const spec = planLaunch(req, user, ctx.state, await childCredentials(ctx.users, user, req.pty !== undefined));
          table.checkTagFree(spec.tag);
          // envd runs a Start that carries a deadline (Connect-Timeout-Ms) under it: the process
          // is killed when it passes, whether or not the client is still there.
          const deadline = context.timeoutMs();
          const proc = new TrackedProcess(spec, {
            timeoutMs: deadline === undefined ? undefined : Math.max(deadline, 1),
          });
          // Subscribed before spawning: the client holds the output back from the first byte.
          const sub = proc.subscribe(ZERO_OFFSETS, { blocking: true, keepaliveMs: keepaliveMs(context) });
          try {
            await proc.spawn();
          } catch (err) {
            sub.close();
            throw envdSpawnError(err);
          }
          table.add(proc);
          ctx.log.debug({ pid: proc.pid, cmd: spec.config.cmd, tag: spec.tag, user: user.name }, "process started");
          yield* responses(sub, context);
        },

        async *connect(req, context) {
          const proc = table.find(req.process);
          // envd's Connect follows live output only.
          yield* responses(
            proc.subscribe(proc.log.offsets, { blocking: true, keepaliveMs: keepaliveMs(context) }),
            context,
          );
        },

        async sendInput(req) {
          await writeInput(table.findRunning(req.process), req.input);
          return {};
        },

        async streamInput(requests) {
          let proc: TrackedProcess | undefined;
          for await (const req of requests) {
            switch (req.event.case) {
              case "start":
                proc = table.findRunning(req.event.value.process);
                break;
              case "data":
                if (!proc) {
                  throw new ConnectError(
                    "the first StreamInput message must be start{process}",
                    Code.FailedPrecondition,
                  );
                }
                await writeInput(proc, req.event.value.input);
                break;
              default:
                // keepalive: nothing to do.
                break;
            }
          }
          return {};
        },

        async sendSignal(req) {
          const proc = table.findRunning(req.process);
          proc.signal(signalName(req.signal));
          return {};
        },

        async closeStdin(req) {
          table.findRunning(req.process).process.closeStdin();
          return {};
        },

        async update(req) {
          const proc = table.findRunning(req.process);
          // envd's Update changes what it is given: without a pty, nothing (and answers OK).
          if (!req.pty) return {};
          if (!req.pty.size) throw new ConnectError("pty.size is required", Code.InvalidArgument);
          const { cols, rows } = ptySize(req.pty.size);
          proc.process.resize(cols, rows);
          return {};
        },
      });
    },

    async close() {
      table.killAll();
    },
  };
}

/**
 * Turns a subscription's updates into envd's events, wrapped in the message both streaming
 * RPCs share. A call whose deadline passed ends with deadline_exceeded, as envd's does (the
 * Python SDK makes that its TimeoutException); a process's own end event ends it cleanly.
 */
async function* responses(sub: Subscription, context: HandlerContext) {
  yield* events(sub, context);
  throwIfDeadlinePassed(context);
}

async function* events(sub: Subscription, context: HandlerContext) {
  const writer = RawMessageWriter.for(context);
  const direct: DirectOutput | undefined = writer && {
    writer,
    head: (kind, _offset, length) => processDataHead(kind, length),
  };
  for await (const update of sub.updates(context.signal, direct)) {
    let event: ProcessEventInit;
    switch (update.case) {
      case "start":
        event = { event: { case: "start", value: { pid: update.pid } } };
        break;
      case "data":
        event = { event: { case: "data", value: { output: { case: update.kind, value: update.data } } } };
        break;
      case "end": {
        const { exitCode, exited, status, error } = update.end.status;
        event = { event: { case: "end", value: { exitCode, exited, status, error } } };
        break;
      }
      case "keepalive":
        event = { event: { case: "keepalive", value: {} } };
        break;
      default:
        // Dropped output: envd's wire cannot say so, and its clients never lag past the log.
        continue;
    }
    yield { event };
  }
}

/**
 * envd answers a spawn that failed with invalid_argument (the e2b SDKs' InvalidArgumentError),
 * whatever the reason, but for exhausted resources (resource_exhausted, which clients may
 * retry); tether.v1.Exec keeps the finer codes (a missing program is not_found there).
 */
function envdSpawnError(err: unknown): unknown {
  if (!(err instanceof ConnectError)) return err;
  if (err.code === Code.ResourceExhausted || err.code === Code.InvalidArgument) return err;
  if (err.code !== Code.NotFound && err.code !== Code.PermissionDenied && err.code !== Code.Internal) return err;
  return new ConnectError(err.rawMessage, Code.InvalidArgument, err.metadata, undefined, err);
}

/** The keepalive interval the client asked for (in seconds, envd's header), if any. */
export function keepaliveMs(context: HandlerContext): number | undefined {
  const seconds = Number(context.requestHeader.get(KEEPALIVE_INTERVAL_HEADER));
  return Number.isFinite(seconds) && seconds > 0 ? Math.max(seconds * 1000, 100) : undefined;
}

async function writeInput(proc: TrackedProcess, input: ProcessInput | undefined): Promise<void> {
  const child = proc.process;
  switch (input?.input.case) {
    case "stdin":
      if (child.isPty) {
        throw new ConnectError(`process ${child.pid} runs in a PTY: send input as pty`, Code.FailedPrecondition);
      }
      return child.write(input.input.value);
    case "pty":
      if (!child.isPty) {
        throw new ConnectError(`process ${child.pid} has no PTY: send input as stdin`, Code.FailedPrecondition);
      }
      return child.write(input.input.value);
    default:
      throw new ConnectError("input (stdin or pty bytes) is required", Code.InvalidArgument);
  }
}

function signalName(signal: Signal): NodeJS.Signals {
  switch (signal) {
    case Signal.SIGTERM:
      return "SIGTERM";
    case Signal.SIGKILL:
      return "SIGKILL";
    default:
      throw new ConnectError(`unsupported signal ${signal}: use SIGTERM or SIGKILL`, Code.InvalidArgument);
  }
}
