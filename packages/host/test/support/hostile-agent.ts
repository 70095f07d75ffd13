import { once } from "node:events";
import http2 from "node:http2";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Filesystem, FileType } from "@tether/protocol/filesystem";

/** One entry a hostile agent answers, as the wire has it. */
export interface HostileEntry {
  name: string;
  type: "file" | "dir";
  path: string;
  mode?: number;
  symlinkTarget?: string;
}

/**
 * A fake agent on a real unix socket, speaking the agent's protocol (Connect over HTTP/2
 * for stat and list, `GET /files` for a file's bytes, `GET /health`) and answering whatever the test
 * wants: names with `/` or `..`, links anywhere. It plays a sandbox whose root replaced
 * the real agent, to show what the host does with such answers.
 */
export class HostileAgent {
  /** What `list` answers, by the path asked. */
  readonly listings = new Map<string, HostileEntry[]>();
  /** What `stat` answers, by the path asked. */
  readonly stats = new Map<string, HostileEntry>();
  /** The access tokens it was sent. */
  readonly tokensSeen = new Set<string>();
  private readonly server: http2.Http2Server;

  constructor(readonly socket: string) {
    const rpc = connectNodeAdapter({
      routes: (router) => {
        router.service(Filesystem, {
          stat: (req, ctx) => {
            this.saw(ctx.requestHeader.get("x-access-token"));
            const entry = this.stats.get(req.path);
            if (!entry) throw new Error(`no such path ${req.path}`);
            return { entry: wire(entry) };
          },
          listDir: (req, ctx) => {
            this.saw(ctx.requestHeader.get("x-access-token"));
            return { entries: (this.listings.get(req.path) ?? []).map(wire) };
          },
        });
      },
    });
    this.server = http2.createServer((req, res) => {
      if (req.url === "/health") {
        res.writeHead(204).end();
        return;
      }
      if (req.method === "GET" && req.url.startsWith("/files?")) {
        this.saw(req.headers["x-access-token"] as string | undefined);
        res.writeHead(200, { "content-type": "application/octet-stream" });
        res.end("written by the impostor\n");
        return;
      }
      rpc(req, res);
    });
  }

  async listen(): Promise<void> {
    this.server.listen(this.socket);
    await once(this.server, "listening");
  }

  async close(): Promise<void> {
    await new Promise((resolve) => this.server.close(resolve));
  }

  private saw(token: string | null | undefined): void {
    if (token) this.tokensSeen.add(token);
  }
}

function wire(entry: HostileEntry) {
  return {
    name: entry.name,
    type: entry.type === "dir" ? FileType.DIRECTORY : FileType.FILE,
    path: entry.path,
    size: 24n,
    mode: entry.mode ?? (entry.type === "dir" ? 0o755 : 0o644),
    ...(entry.symlinkTarget !== undefined ? { symlinkTarget: entry.symlinkTarget } : {}),
  };
}
