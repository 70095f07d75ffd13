import { execFile } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readdir, realpath, rename, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { addonEntries, NATIVE_ADDONS } from "./addons.js";
import { AGENT_DIR, agentPackage, bundleAgentScript, COMPILE_CACHE_DIR } from "./agent-script.js";
import { withBuildLock } from "./build-lock.js";
import type { BundleEntry } from "./entries.js";
import { contentHash, describeEntries } from "./hash.js";
import { agentCommand, DEFAULT_MOUNT_POINT } from "./layout.js";
import { sharedLibraries } from "./libraries.js";
import { linkTree } from "./link-tree.js";
import { bundleDirFor, defaultBundleRoot, userBundleRoot } from "./location.js";
import { type BundleManifest, MANIFEST_FILE, readManifest, VERSION_FILE, versionText } from "./manifest.js";
import { markBundleUsed } from "./prune.js";
import { ensureNodeRuntime, NODE_RUNTIME } from "./runtime.js";
import { stampedHash, stampInputs, validStamp, writeStamp } from "./stamp.js";

export interface BuildBundleOptions {
  /** Directory to build into; default: one per content hash under `root`. */
  outDir?: string;
  /** Where hash-named bundle directories go when no `outDir` is given; default `defaultBundleRoot()`. */
  root?: string;
  /**
   * Where to take this checkout's bundle from when `root` has none: linked into `root` rather
   * than built again, while that root's stamp vouches for it. Default `userBundleRoot()` (where
   * `npm run build` prepares it); false for none.
   */
  seedRoot?: string | false;
}

/** A bundle on disk. */
export interface BuiltBundle extends BundleManifest {
  dir: string;
  /** True when `dir` already held this exact bundle and nothing was written. */
  reused: boolean;
}

/** Thrown instead of replacing a directory that holds something other than a bundle. */
export class NotABundleDirectoryError extends Error {
  constructor(readonly dir: string) {
    super(`${dir} exists, is not empty and holds no tether bundle (no ${MANIFEST_FILE}): refusing to replace it`);
    this.name = "NotABundleDirectoryError";
  }
}

interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
}

const run = promisify(execFile);

const ownPackage = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as PackageJson;
/** This package's compiled code: how a bundle is made is an input of it too. */
const OWN_CODE_DIR = fileURLToPath(new URL(".", import.meta.url));

/**
 * Builds the portable agent bundle: the pinned Node.js runtime, the libraries it and the native
 * addons link, the glibc loader, tetherd (a loader, agent/ modules and
 * their V8 compile cache), the addons, manifest.json and VERSION.
 * When `outDir` already holds a bundle with the same content hash it is reused untouched.
 */
export async function buildBundle(options: BuildBundleOptions = {}): Promise<BuiltBundle> {
  const root = options.root ?? defaultBundleRoot();
  const agent = agentPackage();
  // Into the root, the stamp of this checkout's last build may name the bundle without working it out.
  const sourcesKey = `${agent.dir}\n${OWN_CODE_DIR}`;
  if (options.outDir !== undefined) return buildUnlocked(root, agent, sourcesKey, options.outDir);
  const stamped = await stampedBundle(root, sourcesKey);
  if (stamped) return stamped;
  return withBuildLock(root, async () => {
    // Another process may have built it while this one waited for the lock.
    return (
      (await stampedBundle(root, sourcesKey)) ??
      (await linkedBundle(options.seedRoot ?? userBundleRoot(), root, sourcesKey)) ??
      buildUnlocked(root, agent, sourcesKey, undefined)
    );
  });
}

/**
 * The bundle of these sources that `seedRoot`'s stamp names, linked into `root` (see linkTree)
 * with that stamp: a fresh TETHER_HOME's first create takes the bundle `npm run build` made
 * instead of fetching a runtime and building one (tens of seconds on a loaded host). Undefined
 * when the seed root has none, or it cannot be linked: then it is built.
 */
async function linkedBundle(
  seedRoot: string | false,
  root: string,
  sourcesKey: string,
): Promise<BuiltBundle | undefined> {
  if (seedRoot === false || (await realDir(seedRoot)) === (await realDir(root))) return undefined;
  try {
    const stamp = await validStamp(seedRoot, sourcesKey);
    if (!stamp) return undefined;
    const from = path.resolve(bundleDirFor(stamp.contentHash, seedRoot));
    const manifest = await wholeBundle(from, stamp.contentHash);
    if (!manifest) return undefined;
    const dir = path.resolve(bundleDirFor(stamp.contentHash, root));
    let reused = await holdsBundle(dir, stamp.contentHash);
    if (reused) await markBundleUsed(dir);
    else reused = await placeBundle(dir, stamp.contentHash, (staging) => linkTree(from, staging));
    await writeStamp(root, sourcesKey, stamp.contentHash, stamp.inputs);
    return { ...manifest, dir, reused };
  } catch {
    return undefined;
  }
}

async function realDir(dir: string): Promise<string> {
  return realpath(dir).catch(() => path.resolve(dir));
}

async function buildUnlocked(
  root: string,
  agent: { dir: string; version: string },
  sourcesKey: string,
  outDir: string | undefined,
): Promise<BuiltBundle> {
  const { entries, manifest: partial, sources } = await collectInputs(agent);
  const [files, inputs] = await Promise.all([describeEntries(entries), stampInputs(sources)]);
  const manifest: BundleManifest = {
    ...partial,
    contentHash: contentHash(files),
    size: files.reduce((sum, f) => sum + f.size, 0),
    files,
  };
  const dir = path.resolve(outDir ?? bundleDirFor(manifest.contentHash, root));
  let reused = await holdsBundle(dir, manifest.contentHash);
  if (reused) await markBundleUsed(dir);
  else reused = await writeBundle(dir, entries, manifest);
  if (outDir === undefined) await writeStamp(root, sourcesKey, manifest.contentHash, inputs);
  return { ...manifest, dir, reused };
}

/** The bundle the root's stamp names, when its inputs are unchanged and it is there, whole. */
async function stampedBundle(root: string, sourcesKey: string): Promise<BuiltBundle | undefined> {
  const hash = await stampedHash(root, sourcesKey);
  if (!hash) return undefined;
  const dir = path.resolve(bundleDirFor(hash, root));
  const manifest = await wholeBundle(dir, hash);
  if (!manifest) return undefined;
  await markBundleUsed(dir);
  return { ...manifest, dir, reused: true };
}

/** Everything that goes into a bundle, before hashing. */
async function collectInputs(agent: { dir: string; version: string }): Promise<{
  entries: BundleEntry[];
  manifest: Omit<BundleManifest, "contentHash" | "size" | "files">;
  /** Every file the bundle is made from, for its stamp: this package's own code included. */
  sources: string[];
}> {
  const { dir: agentDir, version: agentVersion } = agent;

  const nodeVersion = NODE_RUNTIME.version;
  const [node, agentScript, addons, ownCode] = await Promise.all([
    ensureNodeRuntime(),
    bundleAgentScript(agentDir),
    addonEntries(agentDir),
    readdir(OWN_CODE_DIR),
  ]);
  const scripts = agentScript.files;
  const libraries = await sharedLibraries([node, ...addons.binaries]);
  const entries: BundleEntry[] = [
    { path: "bin/node", mode: 0o755, source: { file: node } },
    ...libraries.map((lib): BundleEntry => ({ path: `lib/${lib.name}`, mode: 0o755, source: { file: lib.source } })),
    ...scripts.map((f): BundleEntry => ({ path: f.path, mode: 0o644, source: { data: f.data } })),
    // tetherd.js is ESM; this says so without relying on node's syntax detection.
    { path: "package.json", mode: 0o644, source: { data: Buffer.from('{ "type": "module", "private": true }\n') } },
    ...addons.entries,
  ];
  const sources = [
    ...entries.flatMap((entry) => ("file" in entry.source ? [entry.source.file] : [])),
    ...agentScript.inputs,
    path.join(agentDir, "package.json"),
    ...ownCode.filter((name) => name.endsWith(".js")).map((name) => path.join(OWN_CODE_DIR, name)),
    fileURLToPath(new URL("../../package.json", import.meta.url)),
  ];
  return {
    entries,
    sources,
    manifest: {
      format: 1,
      bundleVersion: ownPackage.version,
      agentVersion,
      nodeVersion,
      mountPoint: DEFAULT_MOUNT_POINT,
      command: agentCommand(DEFAULT_MOUNT_POINT),
    },
  };
}

/** True when `dir` holds a complete bundle with this content hash (manifest matches, files present). */
async function holdsBundle(dir: string, hash: string): Promise<boolean> {
  return (await wholeBundle(dir, hash)) !== undefined;
}

/** The manifest of the complete bundle with this content hash in `dir` (files present), else undefined. */
async function wholeBundle(dir: string, hash: string): Promise<BundleManifest | undefined> {
  const existing = await readManifest(dir);
  if (existing?.contentHash !== hash) return undefined;
  // Synchronous stats, as for the stamp: every create checks these.
  for (const file of existing.files) {
    const info = statSync(path.join(dir, file.path), { throwIfNoEntry: false });
    if (!info?.isFile() || info.size !== file.size) return undefined;
  }
  return existing;
}

/**
 * Writes the bundle beside `dir` and renames it into place, so `dir` never holds half a bundle.
 * Returns true when a concurrent build put the same bundle there first.
 */
async function writeBundle(dir: string, entries: readonly BundleEntry[], manifest: BundleManifest): Promise<boolean> {
  return placeBundle(dir, manifest.contentHash, async (staging) => {
    for (const entry of entries) {
      const target = path.join(staging, entry.path);
      await mkdirs(staging, path.dirname(entry.path));
      if ("file" in entry.source) await copyFile(entry.source.file, target);
      else await writeFile(target, entry.source.data);
      await chmod(target, entry.mode);
    }
    await writeCompileCache(staging, manifest);
    await writeFile(path.join(staging, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
    await writeFile(path.join(staging, VERSION_FILE), versionText(manifest), { mode: 0o644 });
  });
}

/**
 * Fills a staging directory beside `dir` with `fill`, then renames it into place, so `dir` never
 * holds half a bundle. Returns true when a concurrent build put the same bundle there first.
 */
async function placeBundle(dir: string, hash: string, fill: (staging: string) => Promise<void>): Promise<boolean> {
  const parent = path.dirname(dir);
  await mkdir(parent, { recursive: true });
  const staging = await mkdtemp(path.join(parent, `.${path.basename(dir)}.partial-`));
  try {
    await chmod(staging, 0o755);
    await fill(staging);

    // A concurrent build of the same bundle may have finished meanwhile: keep its directory, which
    // a running sandbox may already have mounted.
    if (await holdsBundle(dir, hash)) return true;
    await moveAside(dir, staging);
    try {
      await rename(staging, dir);
    } catch (err) {
      if (isCode(err, "ENOTEMPTY", "EEXIST") && (await holdsBundle(dir, hash))) return true;
      throw err;
    }
    return false;
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(`${staging}.old`, { recursive: true, force: true });
  }
}

/**
 * Fills compile-cache/ (see the loader in agent-script.ts) by running the staged bundle as a
 * sandbox does: tetherd.js --help compiles what a start compiles, with the same V8 flags, then
 * the other agent modules (the lazily loaded chunks) and the addons' JavaScript are compiled too. The cache is derived
 * from the hashed files and checked by Node against them, so it is not part of the content
 * hash (V8's cache bytes need not be reproducible); a bundle without it only starts slower.
 */
async function writeCompileCache(staging: string, manifest: BundleManifest): Promise<void> {
  const [file, ...args] = agentCommand(staging);
  const options = { cwd: staging, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, maxBuffer: 1 << 20 };
  const what = "compiling the agent's modules with the bundled node for its compile cache";
  const fail = (err: Error & { stderr?: string }) => {
    throw new Error(`${what} failed: ${err.stderr?.trim() || err.message}`);
  };
  await run(file, [...args, "--help"], options).catch(fail);
  const chunks = manifest.files
    .map((f) => f.path)
    .filter((p) => p.startsWith(`${AGENT_DIR}/`) && p.endsWith(".js") && p !== `${AGENT_DIR}/tetherd.js`);
  const script = [
    'import module from "node:module";',
    `module.enableCompileCache({ directory: ${JSON.stringify(path.join(staging, COMPILE_CACHE_DIR))}, portable: true });`,
    ...chunks.map((p) => `await import(${JSON.stringify(pathToFileURL(path.join(staging, p)).href)});`),
    // The addons' JavaScript too (the spawner loads at every start), resolved from staging/.
    ...NATIVE_ADDONS.map((a) => `await import(${JSON.stringify(a.name)});`),
  ].join("\n");
  // The node options go before the script's path in agentCommand's argv: drop tetherd.js for -e.
  const nodeArgs = args.slice(0, -1);
  await run(file, [...nodeArgs, "--input-type=module", "-e", script], options).catch(fail);
  // Node writes the cache 0600/0700; a container's user must read it, like every bundle file.
  await chmodTree(path.join(staging, COMPILE_CACHE_DIR));
}

/**
 * The compile cache's files in a bundle directory, relative to it (none for a bundle built
 * without one): whoever copies a bundle by its manifest (a derived image) copies these too.
 */
export async function compileCacheFiles(dir: string): Promise<string[]> {
  const root = path.join(dir, COMPILE_CACHE_DIR);
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/"))
    .sort();
}

async function chmodTree(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chmodTree(full);
    else await chmod(full, 0o644);
  }
}

/** Clears the way for the new bundle: an empty dir is removed, an old bundle moved off, anything else refused. */
async function moveAside(dir: string, staging: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isCode(err, "ENOENT")) return;
    throw err;
  }
  if (names.length === 0) {
    await rmdir(dir).catch((err) => {
      if (!isCode(err, "ENOENT", "ENOTEMPTY")) throw err;
    });
    return;
  }
  if (!names.includes(MANIFEST_FILE) || !(await readManifest(dir))) throw new NotABundleDirectoryError(dir);
  await rename(dir, `${staging}.old`).catch((err) => {
    if (!isCode(err, "ENOENT")) throw err;
  });
}

/** mkdir -p of `rel` under `root`, each level 0755 whatever the umask. */
async function mkdirs(root: string, rel: string): Promise<void> {
  if (rel === "." || rel === "") return;
  let current = root;
  for (const part of rel.split("/")) {
    current = path.join(current, part);
    await mkdir(current).catch((err) => {
      if (!isCode(err, "EEXIST")) throw err;
    });
    await chmod(current, 0o755);
  }
}

function isCode(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as NodeJS.ErrnoException).code ?? "");
}
