import net from "node:net";
import type { Readable, Writable } from "node:stream";
import { type AgentFrame, type ClientFrame, encodeFrame, FrameReader } from "./frames.js";
import { connectVsock } from "./vsock.js";

/** Stdin goes to the agent in chunks of at most this many bytes. */
export const STDIN_CHUNK_BYTES = 32 << 10;

/** Where a cocoon-style agent listens. */
export type CocoonTarget = { cid: number; port: number } | { unix: string } | { tcp: { host: string; port: number } };

/** What to ask: run argv, or reseed the guest. */
export type CocoonRequest =
  | { argv: string[]; env?: Record<string, string> }
  | { reseed: Buffer; regenMachineId?: boolean };

/** The agent answered with an error frame. */
export class CocoonError extends Error {
  override name = "CocoonError";
}

/**
 * Runs one cocoon-style session: sends the request (after `auth{token}` when a token is
 * given; a TCP listener of an agent with a token wants it), forwards stdin in 32 KiB chunks,
 * writes the command's output, and resolves with its exit code. The connection ending
 * before an exit or error frame is an error.
 */
export async function runCocoonClient(
  target: CocoonTarget,
  request: CocoonRequest,
  io: { stdin?: Readable; stdout: Writable; stderr: Writable },
  accessToken?: string,
): Promise<number> {
  const socket = await connect(target);
  if (accessToken !== undefined) socket.write(encodeFrame({ type: "auth", token: accessToken }));
  const first: ClientFrame =
    "argv" in request
      ? { type: "exec", argv: request.argv, ...(request.env ? { env: request.env } : {}) }
      : {
          type: "reseed",
          data: request.reseed.toString("base64"),
          ...(request.regenMachineId ? { regen_machine_id: true } : {}),
        };
  socket.write(encodeFrame(first));
  const stopStdin = "argv" in request && io.stdin ? forwardStdin(io.stdin, socket) : () => {};
  try {
    return await readFrames(socket, io);
  } finally {
    stopStdin();
    socket.destroy();
  }
}

async function connect(target: CocoonTarget): Promise<net.Socket> {
  if ("cid" in target) return connectVsock(target.cid, target.port);
  const socket = "unix" in target ? net.connect(target.unix) : net.connect(target.tcp.port, target.tcp.host);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

function forwardStdin(stdin: Readable, socket: net.Socket): () => void {
  const onData = (chunk: Buffer) => {
    for (let i = 0; i < chunk.length; i += STDIN_CHUNK_BYTES) {
      const piece = chunk.subarray(i, i + STDIN_CHUNK_BYTES);
      if (!socket.write(encodeFrame({ type: "stdin", data: piece.toString("base64") }))) {
        stdin.pause();
        socket.once("drain", () => stdin.resume());
      }
    }
  };
  const onEnd = () => {
    if (!socket.destroyed) socket.write(encodeFrame({ type: "stdin_close" }));
  };
  stdin.on("data", onData);
  stdin.once("end", onEnd);
  stdin.on("error", () => {});
  return () => {
    stdin.off("data", onData);
    stdin.off("end", onEnd);
    stdin.pause();
  };
}

function readFrames(socket: net.Socket, io: { stdout: Writable; stderr: Writable }): Promise<number> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    let done = false;
    const settle = (fn: () => void) => {
      if (done) return;
      done = true;
      fn();
    };
    socket.on("data", (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = reader.push(chunk);
      } catch (err) {
        settle(() => reject(err));
        return;
      }
      for (const line of lines) {
        let frame: AgentFrame;
        try {
          frame = JSON.parse(line) as AgentFrame;
        } catch {
          settle(() => reject(new Error(`the agent sent a frame that is not JSON: ${line.slice(0, 200)}`)));
          return;
        }
        switch (frame.type) {
          case "stdout":
          case "stderr": {
            const out = frame.type === "stdout" ? io.stdout : io.stderr;
            if (!out.write(Buffer.from(frame.data, "base64"))) {
              socket.pause();
              out.once("drain", () => socket.resume());
            }
            break;
          }
          case "exit":
            settle(() => resolve(frame.exit_code ?? 0));
            return;
          case "error":
            settle(() => reject(new CocoonError(frame.message)));
            return;
        }
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // The agent hanging up while we write is the same failure as it hanging up while we read.
      const closed = err.code === "EPIPE" || err.code === "ECONNRESET";
      settle(() => reject(closed ? new Error(`connection closed before exit frame (${err.code})`) : err));
    });
    // 'end' too: a vsock socket allows half-open connections, so the agent's end alone closes nothing.
    socket.on("end", () => settle(() => reject(new Error("connection closed before exit frame"))));
    socket.on("close", () => settle(() => reject(new Error("connection closed before exit frame"))));
  });
}
