import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { removeHome, Sandboxes } from "@tether/host";
import { DEBIAN, dockerSkipReason } from "./support/server.js";

const skip = await dockerSkipReason();
const serverDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const readme = readFileSync(path.join(serverDir, "..", "..", "README.md"), "utf8");

/** The code blocks of the README's server quick start, in order. */
function quickStart(): { sh: string; js: string } {
  const start = readme.indexOf("### Self-hosted E2B: `tether serve`");
  assert.ok(start >= 0, "the README has the server quick start");
  const section = readme.slice(start, readme.indexOf("\n#", start + 10));
  const blocks = [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)];
  const sh = blocks.find((b) => b[1] === "sh")?.[2];
  const js = blocks.find((b) => b[1] === "js")?.[2];
  assert.ok(sh && js, "a sh block and a js block");
  return { sh, js };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

test("the README's server quick start runs as written", { skip }, async () => {
  const { sh, js } = quickStart();
  const port = await freePort();
  // Only what this machine lacks changes: the image (nothing is pulled here) and a free port.
  const script = sh.replaceAll("debian:bookworm-slim", DEBIAN).replaceAll("3000", String(port));
  assert.notEqual(script, sh);
  // Inside the repository, so that `npx tether` and `import "e2b"` resolve as in a checkout.
  const dir = mkdtempSync(path.join(serverDir, "dist", "quickstart-"));
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-quickstart-"));
  try {
    writeFileSync(path.join(dir, "hello-e2b.mjs"), js);
    // Its own process group, so the server it starts in the background is stopped with it.
    const shell = spawn("bash", ["-ec", script], {
      cwd: dir,
      env: { ...process.env, TETHER_HOME: home, E2B_API_KEY: "", E2B_API_URL: "", E2B_SANDBOX_URL: "" },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    shell.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    shell.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    // 'exit', not 'close': the background server holds the pipes open.
    const status = await new Promise<number | null>((resolve) => shell.on("exit", (code) => resolve(code)));
    try {
      process.kill(-(shell.pid as number), "SIGTERM");
    } catch {
      // The group is gone already.
    }
    assert.equal(status, 0, `stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^hello from \d+\.\d+/m);
  } finally {
    const sandboxes = new Sandboxes({ home });
    for (const s of await sandboxes.list()) await sandboxes.remove(s.id).catch(() => {});
    sandboxes.close();
    rmSync(dir, { recursive: true, force: true });
    await removeHome(home);
  }
});
