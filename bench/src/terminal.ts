import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandboxes } from "@tether/host";
import { startServer } from "@tether/server";
import Docker from "dockerode";
import { pino } from "pino";
import WebSocket from "ws";
import { removeHome } from "./bench-home.js";
import type { Row } from "./report.js";
import { summarize, type Timing } from "./stats.js";

const DEBIAN = "tether-test/debian";
const RUNS = Number(process.env.BENCH_TERMINAL_RUNS ?? 200);

export interface TerminalResults {
  /** A key typed into the dashboard's terminal WebSocket until its echo comes back on it. */
  dashboard: Timing;
  /** The same through the SDK's PTY as `tether shell` drives it (one input stream). */
  shell: Timing;
}

/** Resolves when `want` shows up in what `subscribe` hands on, after `send`. */
function echoOf(subscribe: (on: (text: string) => void) => void): (send: () => void, want: string) => Promise<void> {
  let waiting: { want: string; resolve: () => void } | undefined;
  subscribe((text) => {
    if (waiting && text.includes(waiting.want)) {
      const w = waiting;
      waiting = undefined;
      w.resolve();
    }
  });
  return (send, want) =>
    new Promise<void>((resolve) => {
      waiting = { want, resolve };
      send();
    });
}

/**
 * The terminal's round trip, key to echo: through tether serve's dashboard terminal (a
 * WebSocket to the server, which feeds the agent's PTY) beside `tether shell`'s path (the
 * SDK's PTY, input streamed), each in its own shell in one sandbox. No browser: this is
 * the server's share of what a person typing in the dashboard waits for.
 */
export async function measureTerminal(
  log: (text: string) => void,
): Promise<{ rows: Row[]; results: TerminalResults } | { skipped: string }> {
  const docker = new Docker();
  try {
    await docker.ping();
    await docker.getImage(DEBIAN).inspect();
  } catch (err) {
    return { skipped: `Docker or ${DEBIAN} not usable: ${(err as Error).message.split("\n")[0]}` };
  }
  const home = mkdtempSync(path.join(os.tmpdir(), "tether-bench-terminal-"));
  const sandboxes = new Sandboxes({ home });
  const server = await startServer({ sandboxes, port: 0, logger: pino({ level: "warn" }) });
  const key = server.keys.create().key;
  try {
    const created = await fetch(`${server.url}/v2/sandboxes`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ templateID: DEBIAN, timeout: 600 }),
    });
    if (created.status !== 201) throw new Error(`create: ${created.status} ${await created.text()}`);
    const { sandboxID } = (await created.json()) as { sandboxID: string };
    log(
      `terminal key-to-echo round trip, dashboard WebSocket beside tether shell's PTY stream: ${RUNS} runs each, interleaved`,
    );

    const agent = await sandboxes.connect(sandboxID);
    let onText: (text: string) => void = () => {};
    const pty = await agent.pty.create({
      cols: 80,
      rows: 24,
      argv: ["/bin/bash", "-l"],
      onData: (d) => onText(Buffer.from(d).toString()),
    });
    const keys: ((value: IteratorResult<Uint8Array>) => void)[] = [];
    const pending: Uint8Array[] = [];
    const source: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: () =>
          new Promise<IteratorResult<Uint8Array>>((resolve) => {
            const ready = pending.shift();
            if (ready) resolve({ value: ready, done: false });
            else keys.push(resolve);
          }),
      }),
    };
    const type = (text: string) => {
      const bytes = Buffer.from(text);
      const waiter = keys.shift();
      if (waiter) waiter({ value: bytes, done: false });
      else pending.push(bytes);
    };
    pty.streamInput(source).catch(() => {});
    const viaShell = echoOf((on) => {
      onText = on;
    });
    await new Promise((r) => setTimeout(r, 1000));

    const ws = new WebSocket(`${server.url.replace(/^http/, "ws")}/dashboard/terminal`);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => {
        ws.send(JSON.stringify({ key, sandboxID, cols: 80, rows: 24 }));
        resolve();
      });
      ws.once("error", reject);
    });
    const viaWs = echoOf((on) => ws.on("message", (data, binary) => binary && on(data.toString())));
    await new Promise<void>((resolve) => ws.once("message", () => resolve()));
    // The prompt first: then every key's echo is its own.
    await new Promise((r) => setTimeout(r, 1000));
    // Interleaved, after a common warm-up: a fresh sandbox is slower at first, and whichever ran first paid for it.
    const timeOne = async (fn: () => Promise<void>) => {
      const start = process.hrtime.bigint();
      await fn();
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const viaDashboard = () => viaWs(() => ws.send(JSON.stringify({ type: "input", data: "q" })), "q");
    const viaCli = () => viaShell(() => type("q"), "q");
    for (let i = 0; i < 20; i++) {
      await viaDashboard();
      await viaCli();
    }
    const dashboardSamples: number[] = [];
    const shellSamples: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      dashboardSamples.push(await timeOne(viaDashboard));
      shellSamples.push(await timeOne(viaCli));
    }
    const dashboard = summarize(dashboardSamples);
    const shell = summarize(shellSamples);
    ws.close();
    await pty.kill().catch(() => {});
    agent.close();

    const results: TerminalResults = { dashboard, shell };
    const delta = dashboard.p50 - shell.p50;
    const rows: Row[] = [
      {
        metric: "terminal key to echo p50 (dashboard WS)",
        unit: "ms",
        tether: dashboard.p50,
        baseline: shell.p50,
        baselineName: "tether shell's PTY stream",
        ratio: dashboard.p50 / shell.p50,
        target: "<= +2 ms",
        met: delta <= 2,
      },
    ];
    return { rows, results };
  } finally {
    await server.close();
    await removeHome(sandboxes);
  }
}
