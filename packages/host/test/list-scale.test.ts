import assert from "node:assert/strict";
import fsPromises, { mkdir, writeFile } from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";
import { LocalBackend, VmBackend } from "../src/index.js";
import { scratchHome } from "./support/backends.js";

// Every sandbox of a home has a directory under sandboxes/, whatever its backend; each CLI
// command lists every backend (reconcile), so a list must read each directory a bounded
// number of times. Looking each foreign one up by name read every other's: 3 s a command
// with 50 docker sandboxes, and quadratic in their number.
const FOREIGN = 300;

let scratch: Awaited<ReturnType<typeof scratchHome>>;

before(async () => {
  scratch = await scratchHome();
  for (let i = 0; i < FOREIGN; i++) {
    const dir = path.join(scratch.home, "sandboxes", i.toString(16).padStart(12, "a"));
    await mkdir(dir, { recursive: true });
    // A docker sandbox's directory holds its token and run/, no backend meta.
    await writeFile(path.join(dir, "token"), "t");
  }
  // One of each backend's own, by meta alone (never started): listed as being made.
  for (const [id, backend] of [
    ["bbbbbbbbbbb1", "local"],
    ["bbbbbbbbbbb2", "vm"],
  ]) {
    await mkdir(path.join(scratch.home, "sandboxes", id), { recursive: true });
    const meta = { id, name: `tether-${id}`, backend, image: "", labels: {}, createdAt: Date.now() };
    await writeFile(path.join(scratch.home, "sandboxes", id, "sandbox.json"), JSON.stringify(meta));
  }
});

after(() => scratch.remove());

/** Runs `fn`, counting the files read through fs/promises meanwhile. */
async function countingReads<T>(fn: () => Promise<T>): Promise<{ value: T; reads: number }> {
  const original = fsPromises.readFile;
  let reads = 0;
  fsPromises.readFile = ((...args: Parameters<typeof original>) => {
    reads++;
    return original(...args);
  }) as typeof original;
  syncBuiltinESMExports();
  try {
    return { value: await fn(), reads };
  } finally {
    fsPromises.readFile = original;
    syncBuiltinESMExports();
  }
}

for (const [kind, make] of [
  ["local", () => new LocalBackend({ home: scratch.home })],
  ["vm", () => new VmBackend({ home: scratch.home })],
] as const) {
  test(`${kind}: list reads each sandbox directory a bounded number of times, not once per other sandbox`, async () => {
    const { value, reads } = await countingReads(() => make().list());
    assert.deepEqual(
      value.map((s) => s.id),
      [kind === "local" ? "bbbbbbbbbbb1" : "bbbbbbbbbbb2"],
    );
    assert.ok(reads <= 3 * (FOREIGN + 2), `${reads} files read to list ${FOREIGN + 2} directories`);
  });
}
