import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { DescFile } from "@bufbuild/protobuf";
import { toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { AGENT_PACKAGE_DIR } from "@tether/agent/paths";
import { build } from "esbuild";
import { packageDir } from "../src/addons.js";
import { precompiledDescriptors } from "../src/precompiled-descriptors.js";

const agentDir = AGENT_PACKAGE_DIR;
const protocolGen = path.join(packageDir("@tether/protocol", agentDir), "dist", "src", "gen");
/** Every file the agent's protocol generated, and well-known types with maps, oneofs and enums. */
const GENERATED = readdirSync(protocolGen, { recursive: true, encoding: "utf8" })
  .filter((f) => f.endsWith("_pb.js"))
  .map((f) => path.join(protocolGen, f));
const WKT = [
  "file_google_protobuf_timestamp",
  "file_google_protobuf_struct",
  "file_google_protobuf_any",
  "file_google_protobuf_type",
];

const scratch = mkdtempSync(path.join(os.tmpdir(), "tether-descriptors-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A file descriptor as data, telling a field set on the message from a default on its prototype. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(shape);
  if (value === null || typeof value !== "object") return value;
  const own = Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, shape((value as Record<string, unknown>)[k])]),
  );
  const proto = Object.getPrototypeOf(value);
  return { own, defaults: proto === Object.prototype ? null : { ...proto } };
}

/** What protobuf-es derives from a file: messages, fields with JSON names and kinds, enums, methods. */
function derived(file: DescFile): unknown {
  return {
    messages: file.messages.map((m) => ({
      typeName: m.typeName,
      fields: m.fields.map((f) => [f.name, f.number, f.localName, f.jsonName, f.fieldKind, f.presence]),
      oneofs: m.oneofs.map((o) => [o.name, o.fields.map((f) => f.name)]),
      nested: m.nestedMessages.map((n) => n.typeName),
    })),
    enums: file.enums.map((e) => [e.typeName, e.values.map((v) => [v.name, v.number])]),
    services: file.services.map((s) => [
      s.typeName,
      s.methods.map((m) => [m.name, m.methodKind, m.input.typeName, m.output.typeName]),
    ]),
    dependencies: file.dependencies.map((d) => d.name),
  };
}

describe("precompiled descriptors", () => {
  test("the bundle's files describe exactly what protobuf-es decodes at run time", async () => {
    assert.ok(GENERATED.length >= 5, `found generated files: ${GENERATED.join(", ")}`);
    const entry = path.join(scratch, "entry.js");
    writeFileSync(
      entry,
      [
        ...GENERATED.map((f, i) => `export * as gen${i} from ${JSON.stringify(f)};`),
        `export { ${WKT.join(", ")} } from ${JSON.stringify(fileURLToPath(import.meta.resolve("@bufbuild/protobuf/wkt")))};`,
      ].join("\n"),
    );
    const outfile = path.join(scratch, "out.mjs");
    await build({
      entryPoints: [entry],
      absWorkingDir: agentDir,
      outfile,
      bundle: true,
      platform: "node",
      format: "esm",
      plugins: [precompiledDescriptors(agentDir)],
      logLevel: "silent",
    });
    const output = readFileSync(outfile, "utf8");
    // Nothing is left for protobuf-es to decode at start, so descriptor.proto is not even in it.
    assert.doesNotMatch(output, /\bfileDesc\(\s*"/);
    assert.doesNotMatch(output, /google\/protobuf\/descriptor\.proto/);

    const bundled = await import(pathToFileURL(outfile).href);
    const wkt = await import("@bufbuild/protobuf/wkt");
    const pairs: [string, DescFile, DescFile][] = WKT.map((name) => [
      name,
      bundled[name] as DescFile,
      (wkt as unknown as Record<string, DescFile>)[name],
    ]);
    for (const [i, file] of GENERATED.entries()) {
      const original = await import(pathToFileURL(file).href);
      for (const [name, value] of Object.entries(original)) {
        if (name.startsWith("file_")) pairs.push([name, bundled[`gen${i}`][name], value as DescFile]);
      }
    }
    assert.ok(pairs.length >= GENERATED.length + WKT.length);
    for (const [name, precompiled, decoded] of pairs) {
      assert.deepEqual(shape(precompiled.proto), shape(decoded.proto), `${name}: the FileDescriptorProto`);
      assert.deepEqual(
        Buffer.from(toBinary(FileDescriptorProtoSchema, precompiled.proto)),
        Buffer.from(toBinary(FileDescriptorProtoSchema, decoded.proto)),
        `${name}: its encoding`,
      );
      assert.deepEqual(derived(precompiled), derived(decoded), `${name}: what protobuf-es derives from it`);
    }
  });
});
