/**
 * A client the stress run kills mid-call (SIGKILL, no goodbye): it connects to the agent
 * named on its command line (JSON: the SDK's connection options), starts a long command
 * and a never-ending upload, says "busy" on stdout, and waits to be killed.
 */
import { PassThrough } from "node:stream";
import { type ConnectionOptions, connect } from "@tether/sdk";

const [target, dir] = [JSON.parse(process.argv[2] as string) as ConnectionOptions, process.argv[3] as string];
const agent = await connect(target);
const upload = new PassThrough();
upload.write(Buffer.alloc(64 << 10));
// Neither call is awaited to its end: the process dies first.
void agent.commands.run(["sleep", "30"]).catch(() => {});
void agent.files.write(`${dir}/killed-${process.pid}`, upload).catch(() => {});
await agent.commands.run(["true"]);
process.stdout.write("busy\n");
setInterval(() => upload.write(Buffer.alloc(1024)), 20);
