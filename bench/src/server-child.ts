import { startServer } from "@tether/server";
import { pino } from "pino";

// A tether serve in a process of its own, so its RSS is the server's alone (server-scale.ts).
// Prints {url, key} once listening; SIGTERM stops it (sandboxes are the parent's to remove).
const [home, image] = process.argv.slice(2);
const server = await startServer({ home, port: 0, logger: pino({ level: "warn" }, pino.destination(2)) });
server.templates.put("bench", image);
const { key } = server.keys.create({ team: "bench" });
process.stdout.write(`${JSON.stringify({ url: server.url, key })}\n`);
process.once("SIGTERM", () => {
  server.close().then(() => process.exit(0));
});
