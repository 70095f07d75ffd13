import { execFile } from "node:child_process";
import { realpath } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { LOADER_NAME } from "./layout.js";

const run = promisify(execFile);

/** A shared library to ship: its name in the bundle's lib/ and the host file it comes from. */
export interface SharedLibrary {
  name: string;
  source: string;
}

/** Thrown when a binary links a library the host's loader cannot find. */
export class MissingLibraryError extends Error {
  constructor(
    readonly binary: string,
    readonly library: string,
  ) {
    super(`${binary} links ${library}, which the host's loader cannot find`);
    this.name = "MissingLibraryError";
  }
}

/**
 * The shared libraries (and the glibc loader) that `binaries` load, resolved by the host's
 * loader through `ldd`. Each is shipped under the name the binaries ask for (its soname).
 */
export async function sharedLibraries(binaries: readonly string[]): Promise<SharedLibrary[]> {
  const byName = new Map<string, string>();
  for (const binary of binaries) {
    let stdout: string;
    try {
      ({ stdout } = await run("ldd", [binary], { encoding: "utf8" }));
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      throw new Error(`cannot list the libraries of ${binary} with ldd (a glibc host is needed): ${detail}`);
    }
    for (const line of stdout.split("\n")) {
      const entry = parseLddLine(line);
      if (!entry) continue;
      if (entry.path === undefined) throw new MissingLibraryError(binary, entry.name);
      if (!byName.has(entry.name)) byName.set(entry.name, await realpath(entry.path));
    }
  }
  if (!byName.has(LOADER_NAME)) throw new Error(`none of ${binaries.join(", ")} uses the glibc loader ${LOADER_NAME}`);
  return [...byName].map(([name, source]) => ({ name, source })).sort((a, b) => a.name.localeCompare(b.name));
}

/** One line of ldd's output: `name => /path (addr)`, `/path/ld.so (addr)`, or `name => not found`. */
function parseLddLine(line: string): { name: string; path?: string } | undefined {
  const text = line.trim();
  const linked = /^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/.exec(text);
  if (linked) {
    if (linked[2] === "not found") return { name: linked[1] };
    // The vDSO is in the kernel, not a file: `linux-vdso.so.1 =>  (0x...)` on some hosts.
    if (!linked[2].startsWith("/")) return undefined;
    return { name: linked[1], path: linked[2] };
  }
  const direct = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(text);
  if (direct) return { name: path.basename(direct[1]), path: direct[1] };
  return undefined;
}
