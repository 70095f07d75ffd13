import type { MessageInitShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { InitRequestSchema } from "@tether/protocol/workspace";
import { Agent, type InitReplySchema, type InitRequest } from "@tether/protocol/yolo";
import { type AgentContext, requestUser } from "../context.js";
import type { AgentService } from "../rpc/service.js";
import type { WorkspaceInit } from "./init.js";
import { InitLogQueue } from "./log.js";
import { planInit } from "./plan.js";

type InitReplyInit = MessageInitShape<typeof InitReplySchema>;

/** Where yolo's owner/name repositories live unless the agent is told otherwise. */
export const DEFAULT_GIT_BASE_URL = "https://github.com";

const REPO_PART = /^[A-Za-z0-9_.-]+$/;

/**
 * yolo's `yolo.agent_container.Agent.Init` (@tether/protocol's proto/yolo/agent_container.proto)
 * on top of the same workspace init: owner/name becomes `<base>/OWNER/NAME.git`, cloned into NAME.
 */
export function createYoloService(ctx: AgentContext, init: WorkspaceInit, gitBaseUrl?: string): AgentService {
  const base = (gitBaseUrl ?? DEFAULT_GIT_BASE_URL).replace(/\/+$/, "");
  return {
    register(router) {
      router.service(Agent, {
        async *init(req, context) {
          const user = requestUser(ctx, context.requestHeader);
          const plan = planInit(toWorkspaceRequest(req, base), user, ctx.state.defaultWorkdir);
          const queue = new InitLogQueue<InitReplyInit>();
          init
            .run(
              user,
              plan,
              (line) =>
                queue.push(
                  line.header ? { logLineHeader: line.text } : { logLineHeader: line.step, logLine: line.text },
                ),
              context.signal,
            )
            .then(
              (outcome) => {
                queue.push({
                  logLineHeader: "keys",
                  githubSshPublicKeyContent: outcome.sshPublicKey,
                  githubGpgPublicKeyContent: outcome.gpgPublicKey,
                });
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

function toWorkspaceRequest(req: InitRequest, base: string) {
  const owner = req.envRepoOwner.trim();
  const name = req.envRepoName.trim().replace(/\.git$/, "");
  const repositories = [];
  if (owner || name) {
    for (const [field, value] of [
      ["env_repo_owner", owner],
      ["env_repo_name", name],
    ]) {
      if (!REPO_PART.test(value) || value === "." || value === "..") {
        throw new ConnectError(
          `${field} ${JSON.stringify(value)} is not a GitHub owner or repository name`,
          Code.InvalidArgument,
        );
      }
    }
    repositories.push({ url: `${base}/${owner}/${name}.git`, dir: name });
  }
  return create(InitRequestSchema, {
    repositories,
    gitUserName: req.userFullName,
    gitUserEmail: req.githubUserEmail,
  });
}
