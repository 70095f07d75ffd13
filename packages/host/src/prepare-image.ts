import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { type BuiltBundle, compileCacheFiles, DEFAULT_MOUNT_POINT, MANIFEST_FILE, VERSION_FILE } from "@tether/bundle";
import type Docker from "dockerode";
import tar from "tar-stream";
import { ImageNotFoundError, ImagePrepareError } from "./errors.js";

/** Repository of derived images; the tag is the content hash. */
export const PREPARED_REPOSITORY = "tether/prepared";
export const LABEL_PREPARED_FROM = "tether.prepared-from";
export const LABEL_BUNDLE = "tether.bundle";

/** A derived image: the user's image with the agent bundle at /.tether. */
export interface PreparedImage {
  /** `tether/prepared:<hash>`: run this instead of the user's image. */
  tag: string;
  baseImage: string;
  baseImageId: string;
  bundleHash: string;
  /** True when an image with this tag already existed and nothing was built. */
  reused: boolean;
}

/**
 * The derived image's tag: a hash of the base image's id, the bundle's content hash and
 * its compile cache's digest (see compileCacheDigest): the cache goes into the image too,
 * and two builds of one bundle need not have made the same one.
 */
export function preparedTag(baseImageId: string, bundleHash: string, cacheDigest: string): string {
  const hash = createHash("sha256").update(`${baseImageId}\0${bundleHash}\0${cacheDigest}`).digest("hex").slice(0, 32);
  return `${PREPARED_REPOSITORY}:${hash}`;
}

/** sha256 over the bundle's compile cache files, names and bytes (the cache is not in its content hash). */
export async function compileCacheDigest(bundleDir: string): Promise<string> {
  const hash = createHash("sha256");
  // Small files (about 900 KB in all): read whole.
  for (const rel of await compileCacheFiles(bundleDir)) {
    hash
      .update(`${rel}\0`)
      .update(await readFile(path.join(bundleDir, rel)))
      .update("\0");
  }
  return hash.digest("hex");
}

/**
 * Builds (or reuses) a derived image for engines that cannot bind-mount the bundle:
 * `FROM <base image id>` plus the bundle as one layer at /.tether, built through the
 * Engine API from a tar context. Keeps the base image's entrypoint, cmd, env and user.
 */
export async function prepareImage(docker: Docker, image: string, bundle: BuiltBundle): Promise<PreparedImage> {
  let base: Docker.ImageInspectInfo;
  try {
    base = await docker.getImage(image).inspect();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) throw new ImageNotFoundError(image);
    throw err;
  }
  const tag = preparedTag(base.Id, bundle.contentHash, await compileCacheDigest(bundle.dir));
  const result = { tag, baseImage: image, baseImageId: base.Id, bundleHash: bundle.contentHash };
  const existing = await docker
    .getImage(tag)
    .inspect()
    .catch(() => undefined);
  if (existing?.Config.Labels?.[LABEL_BUNDLE] === bundle.contentHash) return { ...result, reused: true };

  const context = buildContext(base.Id, bundle);
  let output: unknown[];
  try {
    const stream = await docker.buildImage(context as unknown as NodeJS.ReadableStream, {
      t: tag,
      labels: { [LABEL_PREPARED_FROM]: base.Id, [LABEL_BUNDLE]: bundle.contentHash },
      rm: true,
      forcerm: true,
    });
    output = await new Promise<unknown[]>((resolve, reject) =>
      docker.modem.followProgress(stream, (err: Error | null, res: unknown[]) => (err ? reject(err) : resolve(res))),
    );
  } catch (err) {
    throw new ImagePrepareError(`building ${tag} from ${image} failed: ${(err as Error).message}`, { cause: err });
  }
  const failure = output.find((e): e is { error: string } => typeof (e as { error?: unknown }).error === "string");
  if (failure) throw new ImagePrepareError(`building ${tag} from ${image} failed: ${failure.error}`);
  return { ...result, reused: false };
}

/** The build context: a Dockerfile and the bundle's files under tether/, streamed file by file. */
function buildContext(baseImageId: string, bundle: BuiltBundle): tar.Pack {
  const pack = tar.pack();
  const dockerfile = `FROM ${baseImageId}\nCOPY tether/ ${DEFAULT_MOUNT_POINT}/\n`;
  (async () => {
    // The compile cache is derived from the bundle's files, not listed in its manifest: copied too.
    const files = [
      ...bundle.files.map((f) => f.path),
      ...(await compileCacheFiles(bundle.dir)),
      MANIFEST_FILE,
      VERSION_FILE,
    ];
    pack.entry({ name: "Dockerfile", mode: 0o644 }, dockerfile);
    const dirs = new Set<string>();
    for (const rel of files) {
      for (let dir = path.posix.dirname(rel); dir !== "."; dir = path.posix.dirname(dir)) dirs.add(dir);
    }
    pack.entry({ name: "tether/", type: "directory", mode: 0o755 });
    for (const dir of [...dirs].sort()) pack.entry({ name: `tether/${dir}/`, type: "directory", mode: 0o755 });
    for (const rel of files) {
      const source = path.join(bundle.dir, rel);
      const info = await stat(source);
      const entry = pack.entry({ name: `tether/${rel}`, size: info.size, mode: info.mode & 0o777 });
      await pipeline(createReadStream(source), entry);
    }
    pack.finalize();
  })().catch((err) => pack.destroy(err));
  return pack;
}
