import type { ConnectRouter } from "@connectrpc/connect";

/** One RPC service of the agent: registers its handlers and releases what it holds. */
export interface AgentService {
  register(router: ConnectRouter): void;
  close(): Promise<void>;
}
