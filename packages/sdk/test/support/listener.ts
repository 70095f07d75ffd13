import { type ChildProcess, spawn } from "node:child_process";

/** A process of its own holding listening sockets, so ports show a pid other than the agent's. */
export interface ListenerProcess {
  child: ChildProcess;
  pid: number;
  /** The port every address listens on. */
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts `node -e` listening on each address (all on one port: the first gets a free one,
 * or `port`); each connection is answered with `reply` (the address when unset) and closed.
 * `prefix` runs it through another command (`ip netns exec NS`).
 */
export async function startListener(
  addresses: string[],
  options: { port?: number; reply?: string; prefix?: string[]; tag?: string } = {},
): Promise<ListenerProcess> {
  const script = `
const net = require("node:net");
const [addresses, wanted, reply] = JSON.parse(process.argv[1]);
(async () => {
  let port = wanted;
  for (const address of addresses) {
    const server = net.createServer((s) => { s.on("error", () => {}); s.end(reply ?? address); });
    await new Promise((resolve, reject) => { server.once("error", reject); server.listen(port, address, resolve); });
    port = server.address().port;
  }
  process.stdout.write(port + "\\n");
})().catch((err) => { console.error(err.message); process.exit(1); });`;
  const [command, ...args] = [
    ...(options.prefix ?? []),
    process.execPath,
    "-e",
    script,
    JSON.stringify([addresses, options.port ?? 0, options.reply ?? null]),
    ...(options.tag ? [options.tag] : []),
  ];
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout?.setEncoding("utf8").on("data", (t: string) => {
      out += t;
      if (out.includes("\n")) resolve(Number(out.trim()));
    });
    child.stderr?.setEncoding("utf8").on("data", (t: string) => {
      err += t;
    });
    child.once("exit", (code) => reject(new Error(`listener exited (${code}): ${err}`)));
  });
  return {
    child,
    pid: child.pid as number,
    port,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
}
