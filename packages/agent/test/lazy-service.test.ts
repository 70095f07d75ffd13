import assert from "node:assert/strict";
import { test } from "node:test";
import type { AgentService } from "../src/rpc/service.js";
import { LazyService } from "../src/server/lazy-service.js";

function fakeService(closed: string[], name: string): AgentService {
  return {
    register() {},
    async close() {
      closed.push(name);
    },
  };
}

test("a lazy service loads once, however many calls race for it", async () => {
  let loads = 0;
  const closed: string[] = [];
  const lazy = new LazyService("x.v1.X", async () => {
    loads++;
    await new Promise((r) => setTimeout(r, 10));
    return fakeService(closed, "x");
  });
  const [a, b, c] = await Promise.all([lazy.load(), lazy.load(), lazy.load()]);
  assert.equal(loads, 1);
  assert.ok(a === b && b === c);
  await lazy.close();
  assert.deepEqual(closed, ["x"]);
});

test("a failed load is tried again by the next call", async () => {
  let loads = 0;
  const lazy = new LazyService("x.v1.X", async () => {
    loads++;
    if (loads === 1) throw new Error("first load fails");
    return fakeService([], "x");
  });
  await assert.rejects(lazy.load(), /first load fails/);
  await lazy.load();
  assert.equal(loads, 2);
});

test("closing a service that never loaded loads nothing", async () => {
  let loads = 0;
  const lazy = new LazyService("x.v1.X", async () => {
    loads++;
    return fakeService([], "x");
  });
  await lazy.close();
  assert.equal(loads, 0);
});
