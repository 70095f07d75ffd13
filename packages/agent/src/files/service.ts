import { Code, ConnectError } from "@connectrpc/connect";
import { Filesystem } from "@tether/protocol/filesystem";
import type { AgentContext } from "../context.js";
import type { AgentService } from "../server/service.js";

// PLACEHOLDER: replaced by the real filesystem service.
export function createFilesystemService(_ctx: AgentContext): AgentService {
  const unimplemented = () => {
    throw new ConnectError("not implemented", Code.Unimplemented);
  };
  return {
    register(router) {
      router.service(Filesystem, {
        stat: unimplemented,
        makeDir: unimplemented,
        move: unimplemented,
        listDir: unimplemented,
        remove: unimplemented,
        watchDir: unimplemented,
        createWatcher: unimplemented,
        getWatcherEvents: unimplemented,
        removeWatcher: unimplemented,
      });
    },
    async close() {},
  };
}
