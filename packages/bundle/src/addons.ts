import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import type { BundleEntry } from "./entries.js";

/** A native (N-API) addon the agent imports: kept out of the esbuild file and shipped as a package. */
interface NativeAddon {
  name: string;
  /** The package's runtime JavaScript, relative to its directory (build/Release/*.node is always added). */
  javascript: (file: string) => boolean;
  /** Static programs the addon builds beside it, shipped executable (they need no libraries). */
  programs?: readonly string[];
}

/** The agent's native addons. All are N-API, so builds made with the host's node load in the bundled one. */
export const NATIVE_ADDONS: readonly NativeAddon[] = [
  // Windows-only and test files are left out; on Linux node-pty needs only pty.node and lib/.
  { name: "node-pty", javascript: (f) => f.startsWith("lib/") && f.endsWith(".js") && !f.endsWith(".test.js") },
  { name: "fs-xattr", javascript: (f) => f === "index.js" },
  // Ours (packages/vsock): AF_VSOCK for the cocoon-style exec listener and client.
  { name: "@tether/vsock", javascript: (f) => f === "index.js" },
  // Ours (packages/spawn): vfork-style spawning of pipe children, the per-thread file rights of
  // a user, and tether-exec-as, which switches a PTY child to its user.
  { name: "@tether/spawn", javascript: (f) => f === "index.js", programs: ["build/Release/tether-exec-as"] },
];

/** Finds an installed package's directory as the agent would resolve it (works for packages with `exports`). */
export function packageDir(name: string, from: string): string {
  const require = createRequire(path.join(from, "package.json"));
  for (const dir of require.resolve.paths(name) ?? []) {
    const candidate = path.join(dir, name);
    if (existsSync(path.join(candidate, "package.json"))) return candidate;
  }
  throw new Error(`package ${name} is not installed where ${from} can load it (run npm install)`);
}

/** The files of each native addon, placed under node_modules/, and the addon binaries for library lookup. */
export async function addonEntries(agentDir: string): Promise<{ entries: BundleEntry[]; binaries: string[] }> {
  const entries: BundleEntry[] = [];
  const binaries: string[] = [];
  for (const addon of NATIVE_ADDONS) {
    const dir = packageDir(addon.name, agentDir);
    const files = await listFiles(dir);
    const natives = files.filter((f) => /^build\/Release\/[^/]+\.node$/.test(f));
    if (natives.length === 0) {
      throw new Error(`${addon.name} in ${dir} has no build/Release/*.node: its install script did not build it`);
    }
    for (const program of addon.programs ?? []) {
      if (!files.includes(program))
        throw new Error(`${addon.name} in ${dir} has no ${program}: its install script did not build it`);
    }
    for (const file of files) {
      const native = natives.includes(file);
      const program = addon.programs?.includes(file) ?? false;
      if (!native && !program && file !== "package.json" && !addon.javascript(file)) continue;
      entries.push({
        path: `node_modules/${addon.name}/${file}`,
        mode: native || program ? 0o755 : 0o644,
        source: { file: path.join(dir, file) },
      });
      if (native) binaries.push(path.join(dir, file));
    }
  }
  return { entries, binaries };
}

/** Every regular file under `dir`, as `/`-separated relative paths, skipping nested node_modules. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (entry.name !== "node_modules") out.push(...(await listFiles(dir, rel)));
    } else if (entry.isFile()) {
      out.push(rel);
    }
  }
  return out;
}
