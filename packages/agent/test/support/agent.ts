import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Filesystem } from "@tether/protocol/filesystem";
import { Process } from "@tether/protocol/process";
import { pino } from "pino";
import { type AgentOptions, type RunningAgent, startAgent } from "../../src/agent.js";

export interface TestAgent {
  agent: RunningAgent;
  /** http://127.0.0.1:PORT */
  url: string;
  /** A scratch directory removed on close. */
  dir: string;
  /** A Connect transport over HTTP/2, with headers added to every call. */
  transport(headers?: Record<string, string>): Transport;
  process: Client<typeof Process>;
  files: Client<typeof Filesystem>;
  close(): Promise<void>;
}

/** Starts a real tetherd on a free loopback port (and a socket in a scratch dir). */
export async function startTestAgent(options: AgentOptions = {}): Promise<TestAgent> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tether-test-"));
  const agent = await startAgent({
    port: 0,
    logger: pino({ level: process.env.TETHER_TEST_LOG ?? "silent" }),
    ...options,
  });
  const url = agent.url as string;
  const transport = (headers: Record<string, string> = {}) =>
    createConnectTransport({
      baseUrl: url,
      httpVersion: "2",
      interceptors: [
        (next) => (req) => {
          for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
          return next(req);
        },
      ],
    });
  const token: Record<string, string> = options.accessToken ? { "x-access-token": options.accessToken } : {};
  return {
    agent,
    url,
    dir,
    transport,
    process: createClient(Process, transport(token)),
    files: createClient(Filesystem, transport(token)),
    async close() {
      await agent.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export { createGrpcTransport };
