import type { MessageInitShape } from "@bufbuild/protobuf";
import { type InitResponseSchema, Workspace } from "@tether/protocol/workspace";
import { type AgentContext, requestUser } from "../context.js";
import type { AgentService } from "../rpc/service.js";
import type { WorkspaceInit } from "./init.js";
import { InitLogQueue } from "./log.js";
import { planInit } from "./plan.js";

type InitResponseInit = MessageInitShape<typeof InitResponseSchema>;

/** `tether.v1.Workspace`: Init streams every log line, then the result. */
export function createWorkspaceService(ctx: AgentContext, init: WorkspaceInit): AgentService {
  return {
    register(router) {
      router.service(Workspace, {
        async *init(req, context) {
          const user = requestUser(ctx, context.requestHeader);
          const plan = planInit(req, user, ctx.state.defaultWorkdir);
          const queue = new InitLogQueue<InitResponseInit>();
          init
            .run(user, plan, (line) => queue.push({ event: { case: "log", value: line } }), context.signal)
            .then(
              (outcome) => {
                queue.push({ event: { case: "result", value: outcome } });
                queue.end();
              },
              (err) => queue.fail(err),
            );
          yield* queue.drain();
        },
      });
    },
    async close() {},
  };
}
