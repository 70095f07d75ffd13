import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { AgentLogger } from "../src/logger.js";

/** Runs `body` (with `logger` an AgentLogger) in a fresh node; its stderr as JSON lines. */
async function linesOf(level: string, body: string): Promise<Record<string, unknown>[]> {
  const module = new URL("../src/logger.js", import.meta.url).href;
  const script = `const { AgentLogger } = await import(${JSON.stringify(module)});\nconst logger = new AgentLogger(${JSON.stringify(level)});\n${body}`;
  const { stderr } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script]);
  return stderr
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("the agent's logger", () => {
  test("lines logged before pino loads are written when it does, in order, below-level ones dropped", async () => {
    const lines = await linesOf(
      "info",
      [
        'logger.info({ n: 1 }, "first");',
        'logger.debug("dropped");',
        'logger.info("second");',
        "await logger.load();",
        'logger.info({ n: 3 }, "after");',
      ].join("\n"),
    );
    assert.deepEqual(
      lines.map((l) => [l.msg, l.n, l.name, l.level]),
      [
        ["first", 1, "tetherd", 30],
        ["second", undefined, "tetherd", 30],
        ["after", 3, "tetherd", 30],
      ],
    );
  });

  test("a warning loads pino at once, without anyone calling load", async () => {
    const lines = await linesOf(
      "info",
      [
        'logger.info("before");',
        'logger.warn({ code: 7 }, "trouble");',
        "await new Promise((r) => setTimeout(r, 300));",
      ].join("\n"),
    );
    assert.deepEqual(
      lines.map((l) => [l.msg, l.level]),
      [
        ["before", 30],
        ["trouble", 40],
      ],
    );
  });

  test("an unknown level is refused when the logger is made", () => {
    assert.throws(() => new AgentLogger("loud"), /unknown log level "loud"/);
  });
});
