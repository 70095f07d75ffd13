// Run as a child process by session-cut.test.ts (with a small heap, its memory watched from
// outside): a real agent, in this process as in the other SDK tests, that cuts a session
// after CUT_AFTER resets, and a client that attaches FOLLOWERS times to a command and then
// cancels them all in a burst. Prints what each call came to as one JSON line.
import { startAgent } from "@tether/agent";
import { connect } from "../../src/index.js";

const FOLLOWERS = Number(process.env.FOLLOWERS ?? 500);
const CUT_AFTER = Number(process.env.CUT_AFTER ?? 50);

/** What a settled call came to: its value's summary, or its error's class and message. */
type Outcome = { ok: true; value?: string } | { ok: false; name: string; message: string };

async function outcome(call: Promise<unknown>, summary?: (value: unknown) => string): Promise<Outcome> {
  try {
    const value = await call;
    return { ok: true, ...(summary ? { value: summary(value) } : {}) };
  } catch (err) {
    const e = err as Error;
    return { ok: false, name: e.name, message: e.message };
  }
}

const agentd = await startAgent({
  port: 0,
  logLevel: "silent",
  accessToken: "cut-token",
  // The agent's guard spares token holders by default; here it cuts them too.
  limits: { resetBurst: CUT_AFTER, resetsPerSecond: 1, countTrustedResets: true },
});
const agent = await connect({ url: agentd.url as string, accessToken: "cut-token" });
try {
  const sleeper = await agent.commands.start(["sleep", "600"]);
  const inFlight = outcome(sleeper.wait());
  const followers = [];
  for (let i = 0; i < FOLLOWERS; i += 250) {
    const batch = Math.min(250, FOLLOWERS - i);
    followers.push(...(await Promise.all(Array.from({ length: batch }, () => agent.commands.connect(sleeper.pid)))));
  }
  for (const follower of followers) follower.disconnect();
  // Sent at once, right after the burst, likely on the session being cut.
  const [listed, echoed] = await Promise.all([
    outcome(agent.commands.list()),
    outcome(agent.commands.run(["echo", "right after"]), (r) => (r as { stdout: string }).stdout),
  ]);
  const followed = await Promise.all(followers.map((f) => outcome(f.wait())));
  const later = await outcome(agent.commands.run(["echo", "later"]), (r) => (r as { stdout: string }).stdout);
  await agent.commands.kill(sleeper.pid);
  const result = {
    inFlight: await inFlight,
    listed,
    echoed,
    followers: followed.filter((o) => !o.ok).map((o) => `${o.name}: ${o.message}`),
    followersDone: followed.filter((o) => o.ok).length,
    later,
    heapUsed: process.memoryUsage().heapUsed,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  agent.close();
  await agentd.close();
}
