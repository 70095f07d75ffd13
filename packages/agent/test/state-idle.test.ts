import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, test } from "node:test";
import { AgentState } from "../src/state.js";

/** Resolves with how many ms after the call `whenIdle` ran its callback. */
function timeWhenIdle(state: AgentState, idleMs: number, latestMs: number): Promise<number> {
  const start = Date.now();
  // whenIdle's timers keep no process alive: the agent's servers do that; here, this one.
  const keepAlive = setInterval(() => {}, 1000);
  return new Promise((resolve) =>
    state.whenIdle(idleMs, latestMs, () => {
      clearInterval(keepAlive);
      resolve(Date.now() - start);
    }),
  );
}

describe("AgentState.whenIdle", () => {
  test("runs once no request has been in flight for the idle time", { timeout: 5000 }, async () => {
    const state = new AgentState();
    const response = new EventEmitter();
    state.trackRequest(response);
    setTimeout(() => response.emit("close"), 100);
    const after = await timeWhenIdle(state, 20, 5000);
    assert.ok(after >= 120 && after < 1000, `ran ${after} ms after the call`);
  });

  test("runs by the latest time even while a request never ends", { timeout: 5000 }, async () => {
    const state = new AgentState();
    state.trackRequest(new EventEmitter());
    const after = await timeWhenIdle(state, 20, 300);
    assert.ok(after >= 300 && after < 1000, `ran ${after} ms after the call`);
  });
});
