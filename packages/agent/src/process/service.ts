import { Code, ConnectError } from "@connectrpc/connect";
import { Process } from "@tether/protocol/process";
import type { AgentContext } from "../context.js";
import type { AgentService } from "../server/service.js";

// PLACEHOLDER: replaced by the real process service.
export function createProcessService(_ctx: AgentContext): AgentService {
  const unimplemented = () => {
    throw new ConnectError("not implemented", Code.Unimplemented);
  };
  return {
    register(router) {
      router.service(Process, {
        list: unimplemented,
        start: unimplemented,
        connect: unimplemented,
        update: unimplemented,
        streamInput: unimplemented,
        sendInput: unimplemented,
        sendSignal: unimplemented,
        closeStdin: unimplemented,
      });
    },
    async close() {},
  };
}
