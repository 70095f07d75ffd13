import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type AgentOptions, type RunningAgent, startAgent } from "@tether/agent";
import { Agent, type ConnectionOptions } from "../../src/index.js";

/** The two ways to reach an agent; every SDK test runs over both. */
export const TRANSPORTS = ["tcp", "unix"] as const;
export type TransportName = (typeof TRANSPORTS)[number];

export interface TestAgent {
  agent: RunningAgent;
  /** A scratch directory removed on close. */
  dir: string;
  /** Connection options for one transport, with the agent's token. */
  target(transport: TransportName, extra?: Partial<ConnectionOptions>): ConnectionOptions;
  /** An SDK client over one transport; closed with the agent. */
  client(transport: TransportName, extra?: Partial<ConnectionOptions>): Agent;
  close(): Promise<void>;
}

/** Starts a real tetherd on a free loopback port and a unix socket in a scratch dir. */
export async function startTestAgent(options: AgentOptions = {}): Promise<TestAgent> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-sdk-test-"));
  const agent = await startAgent({
    port: 0,
    socket: path.join(dir, "agent.sock"),
    logLevel: process.env.TETHER_TEST_LOG ?? "silent",
    ...options,
  });
  const clients: Agent[] = [];
  const target = (transport: TransportName, extra: Partial<ConnectionOptions> = {}): ConnectionOptions =>
    ({
      ...(transport === "tcp" ? { url: agent.url as string } : { socket: agent.socket as string }),
      accessToken: options.accessToken,
      ...extra,
    }) as ConnectionOptions;
  return {
    agent,
    dir,
    target,
    client(transport, extra) {
      const client = new Agent(target(transport, extra));
      clients.push(client);
      return client;
    },
    async close() {
      for (const client of clients) client.close();
      await agent.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
