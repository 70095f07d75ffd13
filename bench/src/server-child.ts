import { startServer } from "@tether/server";
import { pino } from "pino";
import type { ChildTemplate } from "./server-process.js";

// A tether serve in a process of its own, as a user runs it (see server-process.ts).
// Prints {url, key} once listening; SIGTERM stops it (sandboxes are the parent's to remove).
const [home, templates] = process.argv.slice(2);
const server = await startServer({ home, port: 0, logger: pino({ level: "warn" }, pino.destination(2)) });
for (const t of JSON.parse(templates) as ChildTemplate[]) server.templates.put(t.name, t.image, t.defaults);
const { key } = server.keys.create({ team: "bench" });
process.stdout.write(`${JSON.stringify({ url: server.url, key })}\n`);
process.once("SIGTERM", () => {
  server.close().then(() => process.exit(0));
});
