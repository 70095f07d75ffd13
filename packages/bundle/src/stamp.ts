import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * What the last bundle built under a root was made from: each input file's size and
 * modification time, and the content hash they gave.
 *
 * Knowing a bundle's content hash means running esbuild over the agent and hashing about
 * 130 MB: half a second, which every process paid at its first create (`tether run` took
 * a second where `docker run --rm` takes 0.2). When no input has changed since the stamp
 * was written, a few hundred stats give the same hash; any change, or a missing file, and
 * the bundle is worked out again from its inputs.
 */
export interface BundleStamp {
  format: 1;
  contentHash: string;
  inputs: StampedInput[];
}

export interface StampedInput {
  path: string;
  size: number;
  mtimeMs: number;
}

/**
 * The stamp's file under a root, one per checkout of the sources (`sourcesKey`): two
 * checkouts sharing a root (a CI clone beside a working tree) must not vouch for each other.
 */
export function stampFile(root: string, sourcesKey: string): string {
  return path.join(root, `inputs-${createHash("sha256").update(sourcesKey).digest("hex").slice(0, 16)}.json`);
}

/** The files' sizes and modification times now. */
export async function stampInputs(files: readonly string[]): Promise<StampedInput[]> {
  const unique = [...new Set(files)].sort();
  return Promise.all(
    unique.map(async (file) => {
      const info = await stat(file);
      return { path: file, size: info.size, mtimeMs: info.mtimeMs };
    }),
  );
}

/** Records that `inputs` made the bundle with `contentHash` (replacing the file whole). */
export async function writeStamp(
  root: string,
  sourcesKey: string,
  contentHash: string,
  inputs: StampedInput[],
): Promise<void> {
  const stamp: BundleStamp = { format: 1, contentHash, inputs };
  await mkdir(root, { recursive: true });
  const file = stampFile(root, sourcesKey);
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(stamp)}\n`);
  await rename(temp, file);
}

/** The content hash the stamp under `root` records, if every input is as it was then. */
export async function stampedHash(root: string, sourcesKey: string): Promise<string | undefined> {
  return (await validStamp(root, sourcesKey))?.contentHash;
}

/** The stamp under `root` for these sources, if every input is as it was then. */
export async function validStamp(root: string, sourcesKey: string): Promise<BundleStamp | undefined> {
  let stamp: BundleStamp;
  try {
    stamp = JSON.parse(await readFile(stampFile(root, sourcesKey), "utf8")) as BundleStamp;
  } catch {
    return undefined;
  }
  if (stamp.format !== 1 || typeof stamp.contentHash !== "string" || !Array.isArray(stamp.inputs)) return undefined;
  if (stamp.inputs.length === 0) return undefined;
  // Synchronous stats: a few hundred of them take a millisecond or two this way, where as many
  // promises cost every create about 40 ms of CPU.
  const same = stamp.inputs.every((input) => {
    const info = statSync(input.path, { throwIfNoEntry: false });
    return info?.isFile() === true && info.size === input.size && sameMtime(info.mtimeMs, input.mtimeMs);
  });
  return same ? stamp : undefined;
}

/**
 * Times compared to within 1.5 ms: what puts a file's time back (utimes with a
 * Date, `cp -p`, tar) keeps whole milliseconds, rounded or cut, and going through seconds
 * as a double moves it by a microsecond more (590.377 came back as 589.999). The bundle
 * test's own put-back did that to the agent's main.js, and after every `npm test` each
 * fresh TETHER_HOME's first create built the bundle again (5-7 s) instead of linking the
 * one `npm run build` made. An edit within 1.5 ms of the stamped write, of the same size,
 * is what this would miss.
 */
function sameMtime(a: number, b: number): boolean {
  return Math.abs(a - b) < 1.5;
}
