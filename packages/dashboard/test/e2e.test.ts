import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildBundle } from "@tether/bundle";
import { dockerStatus, LIFETIME_STATES, Sandboxes } from "@tether/host";
import { type RunningServer, startServer } from "@tether/server";
import { pino } from "pino";
import { type Browser, chromium, type Page } from "playwright-core";

/** Debian's chromium; TETHER_CHROMIUM names another build (or a missing one, to see the skip). */
const CHROMIUM = process.env.TETHER_CHROMIUM ?? "/usr/bin/chromium";
const IMAGE = "tether-test/debian";
/** Where the screenshots go (CI keeps them as artifacts; the README names this folder). */
const SHOTS = fileURLToPath(new URL("../../test-results/screenshots/", import.meta.url));
const TEST_BUNDLE_ROOT = path.join(os.tmpdir(), "tether-test-bundles");

async function skipReason(): Promise<string | undefined> {
  let reason: string | undefined;
  if (!existsSync(CHROMIUM)) reason = `no ${CHROMIUM} (apt-get install chromium)`;
  else {
    const docker = await dockerStatus();
    if (!docker.available) reason = `Docker is not usable: ${docker.reason ?? "unknown"}`;
  }
  if (reason && process.env.CI === "true")
    throw new Error(`CI needs these for the dashboard's browser tests: ${reason}`);
  if (reason) console.log(`# skipping the dashboard's browser tests: ${reason}`);
  return reason;
}

const skip = await skipReason();
let home: string;
let sandboxes: Sandboxes;
let server: RunningServer;
let browser: Browser;
let alpha: string;
let beta: string;

before(async () => {
  if (skip) return;
  home = await mkdtemp(path.join(os.tmpdir(), "tether-dashboard-test-"));
  sandboxes = new Sandboxes({
    docker: { home, bundle: () => buildBundle({ root: TEST_BUNDLE_ROOT }), bundleRoot: TEST_BUNDLE_ROOT },
  });
  server = await startServer({
    sandboxes,
    port: 0,
    logger: pino({ level: process.env.TETHER_TEST_LOG ?? "warn" }, pino.destination(2)),
  });
  // The image, with a command whose output the logs pane must show.
  server.templates.put("e2e-logger", IMAGE, { command: ["sh", "-c", "echo logged-by-$((6*7)); exec sleep infinity"] });
  alpha = server.keys.create({ team: "alpha" }).key;
  beta = server.keys.create({ team: "beta" }).key;
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  if (skip) return;
  await browser?.close();
  await server?.close();
  const all = await sandboxes.list({ states: LIFETIME_STATES });
  await Promise.all(all.map((s) => sandboxes.remove(s.id).catch(() => {})));
  sandboxes.close();
  await rm(home, { recursive: true, force: true });
});

async function signIn(page: Page, key: string): Promise<void> {
  await page.goto(server.url);
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Waits for a line of the terminal's screen (xterm's rows, one line each as rendered) to match. */
async function waitForLine(page: Page, pattern: string): Promise<void> {
  await page.waitForFunction(
    // biome-ignore lint/performance/useDomNodeTextContent: the rendered rows' line breaks are the point
    (p) => new RegExp(p, "m").test((document.querySelector(".xterm-rows") as HTMLElement).innerText),
    pattern,
    { timeout: 30_000 },
  );
}

/**
 * Ctrl-C, then the shell's prompt on a row after the echoed ^C. A ^C that lands while bash is
 * still between fork and exec of the command can be lost with no prompt after it (CI saw
 * `echo after-42` go to a `sleep` still running), so it is pressed again, as a person would.
 */
async function interrupt(page: Page): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press("Control+C");
    try {
      await page.waitForFunction(
        () => {
          // biome-ignore lint/performance/useDomNodeTextContent: the rendered rows' line breaks are the point
          const rows = (document.querySelector(".xterm-rows") as HTMLElement).innerText.split("\n");
          let at = rows.length - 1;
          while (at >= 0 && !rows[at].includes("^C")) at--;
          return at >= 0 && rows.slice(at + 1).some((row) => /[#$]\s*$/.test(row));
        },
        undefined,
        { timeout: 10_000 },
      );
      return;
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
}

test("a wrong key is refused and sees nothing", { skip }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await signIn(page, `e2b_${"0".repeat(40)}`);
  await page.getByRole("alert").filter({ hasText: "not valid" }).waitFor();
  await page.screenshot({ path: path.join(SHOTS, "signin-refused.png") });
  assert.equal(await page.getByTestId("team").count(), 0);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("tether.apiKey")), null);
  await context.close();
});

test("sign in, create from a template with resources, its logs, a terminal that answers and survives a reload, files up and down, usage in the table, pause, resume, kill", {
  skip,
}, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on("dialog", (d) => void d.accept());
  await page.goto(server.url);
  await page.screenshot({ path: path.join(SHOTS, "signin.png") });
  await signIn(page, alpha);
  assert.equal(await page.getByTestId("team").textContent(), "alpha");
  // The key is never in a URL.
  assert.ok(!page.url().includes(alpha));

  await page.getByLabel("Template or image").fill("e2e-logger");
  await page.getByLabel("Timeout (s)").fill("600");
  await page.getByLabel("Metadata (key=value)").fill("suite=e2e");
  // Resources at create (our extension of E2B's body): they reach the sandbox's cgroup.
  await page.getByLabel("CPUs").fill("1");
  await page.getByLabel("Memory (MiB)").fill("512");
  await page.getByRole("button", { name: "Create" }).click();
  await page.waitForURL(/#\/sandbox\/[a-z0-9]+/, { timeout: 120_000 });
  const id = /#\/sandbox\/([a-z0-9]+)/.exec(page.url())?.[1] as string;
  const asAlpha = { headers: { "x-api-key": alpha } };
  const info = await (await fetch(`${server.url}/sandboxes/${id}`, asAlpha)).json();
  assert.equal(info.cpuCount, 1);
  assert.equal(info.memoryMB, 512);
  const [metric] = await (await fetch(`${server.url}/sandboxes/${id}/metrics`, asAlpha)).json();
  assert.equal(metric.memTotal, 512 * 2 ** 20, "the engine's memory limit");

  // Logs: the line the sandbox's command printed, followed on the page.
  const logs = page.getByTestId("logs");
  await logs.filter({ hasText: "logged-by-42" }).waitFor({ timeout: 60_000 });

  // The terminal: a shell on a PTY, over the WebSocket.
  const status = page.getByTestId("terminal-status");
  await status.filter({ hasText: /^shell \d+$/ }).waitFor({ timeout: 60_000 });
  const pid = ((await status.textContent()) ?? "").split(" ")[1];
  await page.locator(".xterm").click();
  await page.keyboard.type("echo $((6*7))");
  await page.keyboard.press("Enter");
  await waitForLine(page, "^42\\s*$");
  // Ctrl-C interrupts a running command, and the shell answers again.
  // Ctrl-C only once the line runs: a ^C that reaches bash while it still reads the line only clears it.
  await page.keyboard.type("echo started-$((1+1)); sleep 600");
  await page.keyboard.press("Enter");
  await waitForLine(page, "^started-2\\s*$");
  await interrupt(page);
  await page.keyboard.type("echo after-$((40+2))");
  await page.keyboard.press("Enter");
  await waitForLine(page, "^after-42\\s*$");
  await page.screenshot({ path: path.join(SHOTS, "sandbox-terminal.png") });
  // A line written to the sandbox's output now (the agent, PID 1, holds it) comes live, without a reload.
  await page.keyboard.type("echo live-$((5*5)) > /proc/1/fd/1");
  await page.keyboard.press("Enter");
  await logs.filter({ hasText: "live-25" }).waitFor({ timeout: 30_000 });
  await logs.screenshot({ path: path.join(SHOTS, "sandbox-logs.png") });

  // A reload reattaches to the same shell, with its output back.
  await page.reload();
  await status.filter({ hasText: `reattached to shell ${pid}` }).waitFor({ timeout: 30_000 });
  await waitForLine(page, "^after-42\\s*$");
  await page.locator(".xterm").click();
  await page.keyboard.type("echo same-shell-$$");
  await page.keyboard.press("Enter");
  // The shell's own pid ($$: the shell is exec'd in place of the PTY's first process) is the one before.
  await waitForLine(page, `^same-shell-${pid}\\s*$`);

  // Colours: an SGR red reaches the screen as xterm's red.
  await page.keyboard.type("printf '\\033[31mred-%s\\033[0m\\n' $((20+1))");
  await page.keyboard.press("Enter");
  await page.locator(".xterm-rows span.xterm-fg-1", { hasText: "red-21" }).waitFor();
  // A paste (the browser's paste event on the terminal) types its text into the shell.
  await page.evaluate(() => {
    const data = new DataTransfer();
    data.setData("text/plain", "echo pasted-$((3*3))");
    const target = document.querySelector(".xterm-helper-textarea") as HTMLElement;
    target.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  });
  // bash takes a paste bracketed (its newline does not run it): Enter does.
  await page.keyboard.press("Enter");
  await waitForLine(page, "^pasted-9\\s*$");

  // Files: dropped onto the drop zone, listed, downloaded back identical.
  const content = randomBytes(300_000);
  await page.evaluate(
    ([b64, name]) => {
      const bytes = Uint8Array.from(atob(b64 as string), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], name as string));
      const zone = document.querySelector('[data-testid="dropzone"]') as HTMLElement;
      zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    },
    [content.toString("base64"), "payload.bin"],
  );
  await page.getByTestId("upload-progress").filter({ hasText: "payload.bin: uploaded" }).waitFor({ timeout: 60_000 });
  const row = page.locator('[data-file="payload.bin"]');
  await row.waitFor();
  const downloaded = page.waitForEvent("download");
  await row.getByRole("button", { name: "Download payload.bin" }).click();
  const file = await (await downloaded).path();
  assert.deepEqual(await readFile(file), content);
  // Metrics: samples of the running sandbox's CPU and memory, charted.
  await page.locator("figure.spark figcaption", { hasText: /CPU: \d+\.\d %/ }).waitFor();
  await page.locator("figure.spark figcaption", { hasText: /Memory: \d+\.\d MiB/ }).waitFor();
  assert.equal(await page.getByRole("img", { name: "CPU over the last minutes" }).count(), 1);
  await page.screenshot({ path: path.join(SHOTS, "sandbox-files.png"), fullPage: true });

  // Phone width: the same screen stacks.
  await page.setViewportSize({ width: 390, height: 844 });
  // The terminal fits the narrower screen and the shell is told (SIGWINCH): fewer columns.
  await page.locator(".xterm").click();
  await page.keyboard.type("echo cols-$(stty size | cut -d' ' -f2)");
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    () => {
      // biome-ignore lint/performance/useDomNodeTextContent: the rendered rows' line breaks are the point
      const m = /^cols-(\d+)\s*$/m.exec((document.querySelector(".xterm-rows") as HTMLElement).innerText);
      return m !== null && Number(m[1]) < 60;
    },
    undefined,
    { timeout: 30_000 },
  );
  await page.screenshot({ path: path.join(SHOTS, "sandbox-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // The table: states change on screen without a reload.
  await page.goto(`${server.url}/#/`);
  const tableRow = page.locator(`tr[data-sandbox="${id}"]`);
  const state = tableRow.getByTestId("state");
  await state.filter({ hasText: "running" }).waitFor();
  assert.match((await tableRow.textContent()) ?? "", /suite=e2e/);
  assert.match((await tableRow.textContent()) ?? "", /docker/);
  // CPU and memory now, pushed by the server on the event stream; and the limits set at create.
  await tableRow
    .getByTestId("usage")
    .filter({ hasText: /^\d+\.\d% CPU · \d+\.\d MiB$/ })
    .waitFor({ timeout: 30_000 });
  assert.equal(await tableRow.getByTestId("limits").textContent(), "1 CPU, 512 MiB");
  await page.screenshot({ path: path.join(SHOTS, "sandboxes.png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(SHOTS, "sandboxes-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // Another team's key sees none of it, and cannot open its terminal.
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await signIn(otherPage, beta);
  await otherPage.getByTestId("team").filter({ hasText: "beta" }).waitFor();
  await otherPage.getByTestId("empty").waitFor();
  assert.equal(await otherPage.locator(`tr[data-sandbox="${id}"]`).count(), 0);
  const refused = await otherPage.evaluate(
    ([key, sandboxID]) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`ws://${location.host}/dashboard/terminal`);
        ws.onopen = () => ws.send(JSON.stringify({ key, sandboxID, cols: 80, rows: 24 }));
        ws.onclose = (e) => resolve(e.code);
      }),
    [beta, id],
  );
  assert.equal(refused, 4000);
  await other.close();

  const navigations: string[] = [];
  page.on("framenavigated", (f) => navigations.push(f.url()));
  await tableRow.getByRole("button", { name: "Pause" }).click();
  await state.filter({ hasText: "paused" }).waitFor({ timeout: 60_000 });
  await page.screenshot({ path: path.join(SHOTS, "sandboxes-paused.png") });
  await tableRow.getByRole("button", { name: "Resume" }).click();
  await state.filter({ hasText: "running" }).waitFor({ timeout: 60_000 });
  await tableRow.getByRole("button", { name: "Kill" }).click();
  await tableRow.waitFor({ state: "detached", timeout: 60_000 });
  await page.getByTestId("empty").waitFor();
  assert.deepEqual(navigations, [], "no reload or navigation while the states changed");
  await assert.rejects(sandboxes.get(id));
  await context.close();
});

test("templates: register a local image, build one from a Dockerfile with its log streamed", { skip }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const name = `dash-built-${randomBytes(3).toString("hex")}`;
  try {
    await signIn(page, alpha);
    await page.getByRole("link", { name: "Templates" }).click();
    await page.getByLabel("Template name", { exact: true }).fill("dash-bb");
    await page.getByLabel("Local image", { exact: true }).fill("tether-test/busybox");
    await page.getByRole("button", { name: "Register" }).click();
    await page.locator('tr[data-template="dash-bb"]').waitFor();
    // A name in use is refused, not replaced.
    await page.getByLabel("Template name", { exact: true }).fill("dash-bb");
    await page.getByLabel("Local image", { exact: true }).fill("tether-test/debian");
    await page.getByRole("button", { name: "Register" }).click();
    await page.getByRole("alert").filter({ hasText: "exists" }).waitFor();
    assert.match((await page.locator('tr[data-template="dash-bb"]').textContent()) ?? "", /tether-test\/busybox/);

    await page.getByLabel("Build name", { exact: true }).fill(name);
    await page.getByLabel("Dockerfile", { exact: true }).fill("FROM tether-test/busybox\nRUN echo built-by-$((6*7))\n");
    await page.getByRole("button", { name: "Build" }).click();
    const log = page.getByTestId("build-log");
    await log.filter({ hasText: `built ${name}` }).waitFor({ timeout: 120_000 });
    assert.match((await log.textContent()) ?? "", /built-by-42/);
    await page.locator(`tr[data-template="${name}"]`).waitFor();
    await page.screenshot({ path: path.join(SHOTS, "templates.png"), fullPage: true });
  } finally {
    await context.close();
    const { default: Docker } = await import("dockerode");
    await new Docker()
      .getImage(`tether-template/${name}:latest`)
      .remove()
      .catch(() => {});
  }
});
