import { readFile } from "node:fs/promises";
import path from "node:path";
import type { BundleFile } from "./hash.js";

/** manifest.json: what a bundle holds and how to start it. Hosts tell bundles apart by `contentHash`. */
export interface BundleManifest {
  format: 1;
  /** Version of @tether/bundle that built it. */
  bundleVersion: string;
  /** Version of @tether/agent inside it. */
  agentVersion: string;
  /** The bundled Node.js runtime, e.g. "24.21.0". */
  nodeVersion: string;
  /** sha256 (hex) over every file but manifest.json and VERSION: see `contentHash`. */
  contentHash: string;
  /** The mount point `command` is written for. */
  mountPoint: string;
  /** The argv that starts tetherd from `mountPoint`; append tetherd's flags. No shell needed. */
  command: string[];
  /** Total bytes of `files`. */
  size: number;
  files: BundleFile[];
}

export const MANIFEST_FILE = "manifest.json";
export const VERSION_FILE = "VERSION";

/** VERSION: the same stamp as the manifest, one `key value` per line, for people and shell-less greps. */
export function versionText(m: BundleManifest): string {
  return `tether-bundle ${m.bundleVersion}\nagent ${m.agentVersion}\nnode ${m.nodeVersion}\nsha256 ${m.contentHash}\n`;
}

/** Reads a directory's manifest.json, or undefined when there is none or it is not a bundle manifest. */
export async function readManifest(dir: string): Promise<BundleManifest | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, MANIFEST_FILE), "utf8");
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as Partial<BundleManifest>;
    if (value.format !== 1 || typeof value.contentHash !== "string" || !Array.isArray(value.files)) return undefined;
    return value as BundleManifest;
  } catch {
    return undefined;
  }
}
