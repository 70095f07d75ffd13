import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

const SIZE = 2 * 1024 ** 3;
const BLOCK = 1 << 20;
const RSS_LIMIT = 150 * 1024 * 1024;
const tetherd = fileURLToPath(new URL("../../bin/tetherd.js", import.meta.url));
const target = path.join(os.tmpdir(), `tether-large-${process.pid}.bin`);

let agent: ChildProcess;
let baseUrl: string;
let maxRss = 0;
let idleRss = 0;
let sampler: NodeJS.Timeout | undefined;

/** The agent's resident set size, from the kernel's own accounting. */
function rssOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(line?.match(/(\d+)\s*kB/)?.[1] ?? 0) * 1024;
}

before(async () => {
  agent = spawn(process.execPath, [tetherd, "--host", "127.0.0.1", "--port", "0", "--log-level", "info"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  baseUrl = await new Promise<string>((resolve, reject) => {
    let buffered = "";
    agent.once("exit", (code) => reject(new Error(`tetherd exited with ${code} before listening: ${buffered}`)));
    agent.stderr?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split("\n")) {
        try {
          const record = JSON.parse(line) as { msg?: string; tcp?: string };
          if (record.msg === "tetherd listening" && record.tcp) resolve(record.tcp);
        } catch {
          // A partial line: wait for the rest.
        }
      }
    });
  });
  const pid = agent.pid as number;
  idleRss = rssOf(pid);
  sampler = setInterval(() => {
    maxRss = Math.max(maxRss, rssOf(pid));
  }, 25);
});

after(() => {
  clearInterval(sampler);
  agent.kill("SIGTERM");
  rmSync(target, { force: true });
});

/** 2 GiB made on the fly from one random block with a changing counter, hashed as it goes. */
function generated(hash: ReturnType<typeof createHash>): Readable {
  const block = randomBytes(BLOCK);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= SIZE) {
        this.push(null);
        return;
      }
      const chunk = Buffer.from(block);
      chunk.writeUInt32BE(sent / BLOCK, 0);
      hash.update(chunk);
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

test("a 2 GiB upload and download stream through tetherd with its RSS under 150 MB", async () => {
  const filesUrl = `${baseUrl}/files?path=${encodeURIComponent(target)}`;

  const sentHash = createHash("sha256");
  const uploaded = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(filesUrl, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "content-length": String(SIZE) },
    });
    req.on("response", (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    pipeline(generated(sentHash), req).catch(reject);
  });
  assert.equal(uploaded.status, 200, uploaded.body);
  assert.deepEqual(JSON.parse(uploaded.body), [{ name: path.basename(target), type: "file", path: target }]);
  const rssAfterUpload = maxRss;

  const receivedHash = createHash("sha256");
  let received = 0;
  await new Promise<void>((resolve, reject) => {
    http
      .get(filesUrl, (res) => {
        assert.equal(res.statusCode, 200);
        res.on("data", (chunk: Buffer) => {
          receivedHash.update(chunk);
          received += chunk.length;
        });
        res.on("end", resolve);
        res.on("error", reject);
      })
      .on("error", reject);
  });
  assert.equal(received, SIZE);
  assert.equal(receivedHash.digest("hex"), sentHash.digest("hex"));

  console.log(
    `tetherd RSS: ${(idleRss / 2 ** 20).toFixed(1)} MiB idle, max ${(rssAfterUpload / 2 ** 20).toFixed(1)} MiB during the upload, ` +
      `${(maxRss / 2 ** 20).toFixed(1)} MiB overall (limit ${RSS_LIMIT / 2 ** 20} MiB)`,
  );
  assert.ok(maxRss > 0, "RSS was sampled");
  assert.ok(maxRss < RSS_LIMIT, `tetherd RSS peaked at ${maxRss} bytes`);
});
