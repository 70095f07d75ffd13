import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FetchHeaders } from "../src/server/fetch-headers.js";

type HeadersClass = new (init?: ConstructorParameters<typeof Headers>[0]) => Headers;

/** What a script of calls observably did: results, each state's entries, and errors by type. */
function observe(
  Impl: HeadersClass,
  script: (h: Headers) => unknown[],
  init?: ConstructorParameters<typeof Headers>[0],
) {
  try {
    const h = new Impl(init);
    const results = script(h);
    const seen: [string, string][] = [];
    h.forEach((value, key, parent) => {
      assert.equal(parent, h);
      seen.push([key, value]);
    });
    return {
      results,
      entries: [...h],
      keys: [...h.keys()],
      values: [...h.values()],
      forEach: seen,
      cookies: h.getSetCookie(),
      tag: Object.prototype.toString.call(h),
    };
  } catch (err) {
    return { threw: (err as Error).constructor.name };
  }
}

// Each case runs against Node's own Headers (undici's) and ours: both must agree.
const CASES: { name: string; init?: ConstructorParameters<typeof Headers>[0]; script: (h: Headers) => unknown[] }[] = [
  { name: "empty", script: () => [] },
  {
    name: "names are case-insensitive and kept lowercase",
    script: (h) => {
      h.set("Content-Type", "application/proto");
      return [h.get("content-type"), h.get("CONTENT-TYPE"), h.has("Content-type")];
    },
  },
  {
    name: "append joins repeated values; set replaces them",
    script: (h) => {
      h.append("Grpc-Status", "0");
      h.append("x-a", "1");
      h.append("X-A", "2");
      const joined = h.get("x-a");
      h.set("x-a", "3");
      return [joined, h.get("x-a"), h.get("missing")];
    },
  },
  {
    name: "delete, and has after it",
    script: (h) => {
      h.append("a", "1");
      h.append("b", "2");
      h.delete("A");
      return [h.has("a"), h.has("b"), h.get("a")];
    },
  },
  {
    name: "iteration is sorted by name; set-cookie apart",
    script: (h) => {
      h.append("zeta", "1");
      h.append("Set-Cookie", "a=1");
      h.append("alpha", "2");
      h.append("set-cookie", "b=2");
      return [h.get("set-cookie")];
    },
  },
  {
    name: "values are trimmed of HTTP whitespace",
    script: (h) => {
      h.set("a", " \t padded \r\n");
      h.append("b", "");
      return [h.get("a"), h.get("b")];
    },
  },
  { name: "init from a record", init: { "X-One": "1", two: "2" }, script: () => [] },
  {
    name: "init from pairs",
    init: [
      ["a", "1"],
      ["A", "2"],
    ],
    script: () => [],
  },
  { name: "init from another Headers", init: new Headers({ a: "1", "set-cookie": "c=1" }), script: () => [] },
  { name: "a name with a space is refused", script: (h) => [h.set("bad name", "1")] },
  { name: "an empty name is refused", script: (h) => [h.append("", "1")] },
  { name: "a value with a newline inside is refused", script: (h) => [h.set("a", "one\ntwo")] },
  { name: "a value with NUL is refused", script: (h) => [h.set("a", "a\0b")] },
  { name: "get of an invalid name is refused", script: (h) => [h.get("a b")] },
  // biome-ignore lint/suspicious/noExplicitAny: a pair of three on purpose
  { name: "a pair of three is refused", init: [["a", "1", "2"]] as any, script: () => [] },
];

describe("FetchHeaders", () => {
  for (const c of CASES) {
    test(`behaves as Node's Headers: ${c.name}`, () => {
      // Our class takes the other's instances as any iterable of pairs; give each its own kind.
      const ownInit = c.init instanceof Headers ? new FetchHeaders(c.init) : c.init;
      assert.deepEqual(observe(FetchHeaders, c.script, ownInit), observe(Headers, c.script, c.init));
    });
  }

  test("is what the bundle injects for the global name", async () => {
    const mod = await import("../src/server/fetch-headers.js");
    assert.equal(mod.Headers, FetchHeaders);
  });
});
