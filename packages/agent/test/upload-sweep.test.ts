import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type AgentProcess, spawnAgentProcess } from "./support/agent-process.js";

const TOKEN = "sweep-token-4e20";
const agents: AgentProcess[] = [];
const dir = mkdtempSync(path.join(os.tmpdir(), "tether-sweep-"));
after(async () => {
  await Promise.all(agents.map((agent) => agent.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function agent(): Promise<AgentProcess> {
  const started = await spawnAgentProcess(["--port", "0", "--access-token", TOKEN]);
  agents.push(started);
  return started;
}

const temps = (name: string) => readdirSync(dir).filter((entry) => entry.startsWith(`.${name}.`));

/** Starts uploading `name`: one MiB is sent, the rest never comes. Resolves once its temp file is on disk. */
async function stalledUpload(url: string, name: string): Promise<http.ClientRequest> {
  const req = http.request(`${url}/files?path=${encodeURIComponent(path.join(dir, name))}`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "x-access-token": TOKEN },
  });
  req.on("error", () => {});
  req.write(Buffer.alloc(1 << 20, 1));
  for (let i = 0; i < 250 && temps(name).length === 0; i++) await sleep(20);
  assert.equal(temps(name).length, 1, `no temp file for ${name}`);
  return req;
}

test("the temp file of an upload cut off by kill -9 is removed by the next agent, not another agent's", async () => {
  const killed = await agent();
  const live = await agent();
  await stalledUpload(killed.url as string, "cut-off.bin");
  const ongoing = await stalledUpload(live.url as string, "ongoing.bin");
  const exited = new Promise((resolve) => killed.child.once("exit", resolve));
  killed.child.kill("SIGKILL");
  await exited;
  assert.equal(temps("cut-off.bin").length, 1);

  await agent();
  for (let i = 0; i < 250 && temps("cut-off.bin").length > 0; i++) await sleep(20);
  assert.deepEqual(temps("cut-off.bin"), []);
  // The upload of an agent still running is left alone, and still lands.
  assert.equal(temps("ongoing.bin").length, 1);
  const answer = new Promise<number>((resolve) => ongoing.on("response", (res) => resolve(res.statusCode ?? 0)));
  ongoing.end(Buffer.alloc(1 << 20, 2));
  assert.equal(await answer, 200);
  assert.deepEqual(readdirSync(dir).sort(), ["ongoing.bin"]);
});
