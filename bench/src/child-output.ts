import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

/**
 * The first line a helper child writes on stdout (a port, "listening", "busy", its URL):
 * how the bench's children say they are ready. Rejects if the child exits first, naming
 * `who`. The rest of its stdout is read and dropped, so the child never blocks on the pipe.
 */
export async function readyLine(child: ChildProcess, who: string): Promise<string> {
  const line = once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), "line");
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`${who} exited (${code}) before it was ready`);
  });
  const [text] = (await Promise.race([line, exited])) as [string];
  return text;
}
