import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { HomeUnusableError, InvalidSandboxSpecError, makeHome, Registry, RegistryError } from "../src/index.js";
import { MIGRATIONS } from "../src/registry/migrations.js";
import { scratchHome } from "./support/backends.js";

let scratch: Awaited<ReturnType<typeof scratchHome>>;
before(async () => {
  scratch = await scratchHome("tether-registry-test-");
});
after(() => scratch.remove());

function record(id: string, extra: Partial<Parameters<Registry["insert"]>[0]> = {}) {
  return { id, name: `tether-${id}`, backend: "local", image: "host", state: "running" as const, ...extra };
}

describe("registry", () => {
  test("a fresh database: WAL, every migration applied once, in order", () => {
    const home = path.join(scratch.home, "fresh");
    const registry = new Registry(home);
    registry.close();
    const db = new Database(path.join(home, "tether.db"));
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    const applied = db.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all();
    assert.deepEqual(
      applied,
      MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
    );
    db.close();
    // Opening again applies nothing twice.
    new Registry(home).close();
    const again = new Database(path.join(home, "tether.db"));
    assert.equal(
      (again.prepare("SELECT count(*) AS n FROM schema_migrations").get() as { n: number }).n,
      MIGRATIONS.length,
    );
    again.close();
  });

  test("a database from a newer tether is refused, not touched", () => {
    const home = path.join(scratch.home, "newer");
    new Registry(home).close();
    const db = new Database(path.join(home, "tether.db"));
    db.prepare("INSERT INTO schema_migrations VALUES (999, 'future', 0)").run();
    db.close();
    assert.throws(
      () => new Registry(home),
      (err: Error) => err instanceof RegistryError && /999/.test(err.message),
    );
  });

  test("rows round-trip: labels, metadata, resources, timeouts; filters by state, label and backend", () => {
    const registry = new Registry(path.join(scratch.home, "rows"));
    const expiresAt = new Date(Date.now() + 60_000);
    registry.insert(
      record("aaa000000001", {
        labels: { team: "a", "odd key": 'with "quotes"' },
        metadata: { why: "test" },
        resources: { cpus: 1 },
        timeoutMs: 60_000,
        expiresAt,
        idleTimeoutMs: 5_000,
        onExpiry: "remove",
      }),
    );
    registry.insert(record("aaa000000002", { state: "stopped", labels: { team: "b" }, backend: "docker" }));
    registry.insert(record("aaa000000003", { state: "archived" }));
    const one = registry.get("aaa000000001");
    assert.deepEqual(one?.labels, { team: "a", "odd key": 'with "quotes"' });
    assert.deepEqual(one?.metadata, { why: "test" });
    assert.deepEqual(one?.resources, { cpus: 1 });
    assert.equal(one?.expiresAt?.getTime(), expiresAt.getTime());
    assert.equal(one?.idleTimeoutMs, 5_000);
    assert.equal(one?.onExpiry, "remove");
    assert.equal(registry.get("tether-aaa000000001")?.id, "aaa000000001");
    assert.deepEqual(
      registry.list().map((r) => r.id),
      ["aaa000000001", "aaa000000002"],
    );
    assert.deepEqual(
      registry.list({ states: ["archived"] }).map((r) => r.id),
      ["aaa000000003"],
    );
    assert.deepEqual(
      registry.list({ labels: { team: "b" } }).map((r) => r.id),
      ["aaa000000002"],
    );
    assert.deepEqual(
      registry.list({ labels: { "odd key": 'with "quotes"' } }).map((r) => r.id),
      ["aaa000000001"],
    );
    assert.deepEqual(
      registry.list({ backend: "docker" }).map((r) => r.id),
      ["aaa000000002"],
    );
    assert.throws(() => registry.insert(record("aaa000000001")), InvalidSandboxSpecError);
    assert.throws(() => registry.insert(record("aaa000000009", { name: "tether-aaa000000002" })), /taken/);
    // An archived sandbox's name is free again.
    registry.insert(record("aaa000000010", { name: "tether-aaa000000003" }));
    const updated = registry.update("aaa000000002", { state: "error", error: "boom" }, { event: { kind: "test" } });
    assert.equal(updated?.error, "boom");
    assert.equal(
      registry.update("aaa000000002", { state: "running" }, { onlyIf: (r) => r.state === "stopped" }),
      undefined,
    );
    assert.deepEqual(
      registry.events("aaa000000002").map((e) => e.kind),
      ["created", "test"],
    );
    assert.ok(registry.delete("aaa000000002"));
    assert.equal(registry.get("aaa000000002"), undefined);
    registry.close();
  });

  test("20 processes inserting and updating at once: no row lost, none corrupted", async () => {
    const home = path.join(scratch.home, "concurrent");
    const script = fileURLToPath(new URL("./support/registry-writer.js", import.meta.url));
    const codes = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) =>
          new Promise<number | null>((resolve) => {
            const child = spawn(process.execPath, [script, home, String(i)], {
              stdio: ["ignore", "inherit", "inherit"],
            });
            child.on("close", resolve);
          }),
      ),
    );
    assert.deepEqual(codes, Array(20).fill(0));
    const registry = new Registry(home);
    const rows = registry.list();
    assert.equal(rows.length, 20 * 10);
    assert.equal(new Set(rows.map((r) => r.id)).size, 200);
    assert.ok(rows.every((r) => r.state === "stopped" && r.labels.writer !== undefined));
    const db = new Database(path.join(home, "tether.db"));
    assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
    db.close();
    registry.close();
  });
});

describe("a TETHER_HOME that cannot be made", () => {
  test("missing parents are made, each 0700; an existing home is left as it is", () => {
    const home = path.join(scratch.home, "made", "a", "b");
    makeHome(home);
    makeHome(home);
    for (const dir of [path.join(scratch.home, "made"), path.join(scratch.home, "made", "a"), home]) {
      assert.equal(statSync(dir).mode & 0o777, 0o700, dir);
    }
  });

  test("under a file, or a file itself: HomeUnusableError naming the home and why, from makeHome and the registry", () => {
    const file = path.join(scratch.home, "a-file");
    writeFileSync(file, "x");
    for (const home of [path.join(file, "home"), file]) {
      assert.throws(
        () => makeHome(home),
        (err: unknown) => {
          assert.ok(err instanceof HomeUnusableError, String(err));
          assert.equal(err.home, home);
          assert.match(err.message, /ENOTDIR|not a directory/);
          return true;
        },
      );
      assert.throws(() => new Registry(home), HomeUnusableError);
    }
  });

  // Node 20's recursive mkdir retried /proc/<name> and /proc for ever here (mkdir there answers
  // ENOENT although /proc exists): `tether ls` with such a home hung.
  test("under /proc: refused at once, not a hang", {
    skip: statSync("/proc", { throwIfNoEntry: false }) ? undefined : "no /proc",
  }, () => {
    const home = `/proc/tether-home-${process.pid}/x`;
    assert.throws(
      () => makeHome(home),
      (err: unknown) => err instanceof HomeUnusableError && /ENOENT/.test(err.message),
    );
    assert.throws(() => new Registry(home), HomeUnusableError);
  });
});
