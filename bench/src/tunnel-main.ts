import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnAgentProcess } from "@tether/agent";
import { Agent } from "@tether/sdk";
import { startBundledAgent } from "./bundled-agent.js";
import { renderTable } from "./report.js";
import { BUNDLED_AGENT_LABEL, HOST_AGENT_LABEL, measureTunnels } from "./tunnel.js";

// Only the tunnel rows (`node bench/dist/src/tunnel-main.js`), against a tetherd child and
// the bundle's tetherd, each over its unix socket; `npm run bench` runs them with the rest.
const log = (text: string) => process.stderr.write(`bench: ${text}\n`);
const dir = mkdtempSync(path.join(os.tmpdir(), "tether-bench-tunnel-"));
const socket = path.join(dir, "agent.sock");
const agent = await spawnAgentProcess(["--no-tcp", "--socket", socket, "--log-level", "info"]);
const client = new Agent({ socket });
const bundled = await startBundledAgent(dir, "bundled");
try {
  await client.health();
  const result = await measureTunnels(
    [
      { label: HOST_AGENT_LABEL, client, agent },
      { label: BUNDLED_AGENT_LABEL, client: bundled.client, agent: bundled.agent },
    ],
    log,
  );
  process.stdout.write(`${renderTable(result.rows)}\n${JSON.stringify({ ...result, rows: undefined }, null, 2)}\n`);
  process.stdout.write(
    `load average: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}\n`,
  );
} finally {
  client.close();
  await bundled.stop();
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
}
