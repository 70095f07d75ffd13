import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Sandboxes } from "@tether/host";
import type { Agent, PtyHandle } from "@tether/sdk";
import type { Logger } from "pino";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import { z } from "zod";
import type { TeamSandboxes } from "../api/team-sandboxes.js";
import type { ApiKeys } from "../auth/keys.js";

/** Where browsers open terminals. The key travels in the first message, never in the URL. */
export const TERMINAL_PATH = "/dashboard/terminal";
/** Output kept per terminal for a browser that comes back (a reload): the last 256 KiB. */
const SCROLLBACK = 256 * 1024;
/** A terminal nobody watches is killed after this long. */
const ORPHAN_MS = 10 * 60_000;

const Hello = z.object({
  key: z.string().min(1),
  sandboxID: z.string().regex(/^[a-z0-9]{1,64}$/),
  /** A terminal this browser had open before (a reload): attach to it instead of starting a shell. */
  pid: z.number().int().positive().optional(),
  cols: z.number().int().min(2).max(1000),
  rows: z.number().int().min(2).max(1000),
});
const Control = z.discriminatedUnion("type", [
  z.object({ type: z.literal("input"), data: z.string().max(1 << 20) }),
  z.object({
    type: z.literal("resize"),
    cols: z.number().int().min(2).max(1000),
    rows: z.number().int().min(2).max(1000),
  }),
]);

/** One shell on a pseudo-terminal in a sandbox, outliving the browsers that watch it. */
interface Session {
  team: string;
  sandboxID: string;
  agent: Agent;
  pty: PtyHandle;
  scrollback: Buffer[];
  size: number;
  socket: WebSocket | undefined;
  orphaned: NodeJS.Timeout | undefined;
  /** Keys go to the agent in order over one input stream, as `tether shell` sends them (a call per key costs more). */
  input: InputQueue;
}

/** An async iterable fed by pushes: the PTY's one input stream. */
class InputQueue implements AsyncIterable<Uint8Array> {
  private readonly queued: Uint8Array[] = [];
  private waiting: ((r: IteratorResult<Uint8Array>) => void) | undefined;
  private ended = false;

  push(data: Uint8Array): void {
    if (this.ended) return;
    const w = this.waiting;
    this.waiting = undefined;
    if (w) w({ value: data, done: false });
    else this.queued.push(data);
  }

  end(): void {
    this.ended = true;
    this.waiting?.({ value: undefined, done: true });
    this.waiting = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        const ready = this.queued.shift();
        if (ready) return Promise.resolve({ value: ready, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiting = resolve;
        });
      },
    };
  }
}

/**
 * The dashboard's terminals: a WebSocket per browser tab bridged to a PTY in the
 * sandbox's agent (the SDK's `agent.pty`). The shell outlives its socket, so a reloaded
 * page reattaches by pid and gets the recent output back.
 */
export class Terminals {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 2 << 20 });
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly keys: ApiKeys,
    private readonly team: TeamSandboxes,
    private readonly sandboxes: Sandboxes,
    private readonly log: Logger,
  ) {}

  handles(req: IncomingMessage): boolean {
    return (req.url ?? "").split("?")[0] === TERMINAL_PATH;
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.once("message", (data) => {
        this.open(ws, data).catch((err: Error) => {
          this.log.info({ err: err.message }, "terminal refused");
          ws.close(4000, err.message.slice(0, 120));
        });
      });
    });
  }

  /** Forgets a sandbox's terminals (it was killed or paused). */
  forget(sandboxID: string): void {
    for (const [key, s] of this.sessions) {
      if (s.sandboxID !== sandboxID) continue;
      this.drop(key, s);
    }
  }

  close(): void {
    for (const [key, s] of this.sessions) this.drop(key, s);
    this.wss.close();
  }

  private async open(ws: WebSocket, data: RawData): Promise<void> {
    const hello = Hello.parse(JSON.parse(data.toString()));
    const found = this.keys.verify(hello.key);
    if (!found) throw new Error("invalid API key");
    await this.team.get(found.team, hello.sandboxID);
    let session = hello.pid !== undefined ? this.sessions.get(`${hello.sandboxID}:${hello.pid}`) : undefined;
    if (session && session.team !== found.team) session = undefined;
    if (session) {
      session.socket?.close(4001, "attached elsewhere");
      if (session.orphaned) clearTimeout(session.orphaned);
      session.orphaned = undefined;
      session.socket = ws;
      ws.send(JSON.stringify({ type: "ready", pid: session.pty.pid, reattached: true }));
      for (const chunk of session.scrollback) ws.send(chunk);
      // Not awaited: the browser may type as soon as it hears "ready", and its keys must find the handler below.
      session.pty.resize({ cols: hello.cols, rows: hello.rows }).catch(() => {});
    } else {
      session = await this.start(found.team, hello, ws);
      ws.send(JSON.stringify({ type: "ready", pid: session.pty.pid, reattached: false }));
    }
    const s = session;
    const key = `${s.sandboxID}:${s.pty.pid}`;
    ws.on("message", (raw, binary) => {
      if (s.socket !== ws) return;
      const input = (data: string | Buffer) => s.input.push(typeof data === "string" ? Buffer.from(data) : data);
      if (binary) {
        input(raw as Buffer);
        return;
      }
      const parsed = Control.safeParse(safeJson(raw.toString()));
      if (!parsed.success) return;
      if (parsed.data.type === "input") input(parsed.data.data);
      else s.pty.resize({ cols: parsed.data.cols, rows: parsed.data.rows }).catch(() => {});
    });
    ws.on("close", () => {
      if (s.socket !== ws) return;
      s.socket = undefined;
      s.orphaned = setTimeout(() => this.drop(key, s), ORPHAN_MS);
      s.orphaned.unref();
    });
  }

  private async start(team: string, hello: z.infer<typeof Hello>, ws: WebSocket): Promise<Session> {
    const agent = await this.sandboxes.connect(hello.sandboxID);
    const session: Session = {
      team,
      sandboxID: hello.sandboxID,
      agent,
      pty: undefined as unknown as PtyHandle,
      scrollback: [],
      size: 0,
      socket: ws,
      orphaned: undefined,
      input: new InputQueue(),
    };
    try {
      session.pty = await agent.pty.create({
        cols: hello.cols,
        rows: hello.rows,
        argv: ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"],
        onData: (chunk) => {
          const buf = Buffer.from(chunk);
          session.scrollback.push(buf);
          session.size += buf.length;
          while (session.size > SCROLLBACK && session.scrollback.length > 1) {
            session.size -= (session.scrollback.shift() as Buffer).length;
          }
          session.socket?.send(buf);
        },
      });
    } catch (err) {
      agent.close();
      throw err;
    }
    const key = `${hello.sandboxID}:${session.pty.pid}`;
    this.sessions.set(key, session);
    session.pty
      .streamInput(session.input)
      .catch((err: Error) => this.log.debug({ err: err.message, key }, "terminal input stream ended"));
    session.pty.wait().then(
      (exit) => {
        session.socket?.close(1000, `exited ${JSON.stringify(exit).slice(0, 100)}`);
        this.drop(key, session, false);
      },
      () => this.drop(key, session, false),
    );
    return session;
  }

  private drop(key: string, s: Session, kill = true): void {
    if (this.sessions.get(key) !== s) return;
    this.sessions.delete(key);
    if (s.orphaned) clearTimeout(s.orphaned);
    s.input.end();
    const done = kill ? s.pty.kill().catch(() => {}) : Promise.resolve();
    done.finally(() => {
      s.pty.disconnect();
      s.agent.close();
    });
    s.socket?.close(1000, "terminal closed");
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
