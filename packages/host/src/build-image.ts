import { readdir } from "node:fs/promises";
import path from "node:path";
import type Docker from "dockerode";
import { ImagePrepareError } from "./errors.js";

export interface BuildImageOptions {
  /** The build context: a directory, sent whole to the engine. */
  context: string;
  /** The Dockerfile, relative to the context; default "Dockerfile". */
  dockerfile?: string;
  /** The tag to give the image. */
  tag: string;
  /** Each line of the engine's progress, as it comes. */
  onProgress?: (line: string) => void;
}

/** Every file under a directory, relative to it (what the engine's build gets as its context). */
async function contextFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/**
 * Builds an image from a Dockerfile through the Engine API (no docker CLI), streaming its
 * progress; ImagePrepareError with the engine's message when a step fails.
 */
export async function buildImage(docker: Docker, options: BuildImageOptions): Promise<{ tag: string }> {
  const dockerfile = options.dockerfile ?? "Dockerfile";
  let failure: string | undefined;
  try {
    const stream = await docker.buildImage(
      { context: options.context, src: await contextFiles(options.context) },
      { t: options.tag, dockerfile, rm: true, forcerm: true },
    );
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? reject(err) : resolve()),
        (event: { stream?: string; status?: string; error?: string }) => {
          if (event.error) failure = event.error;
          const line = (event.stream ?? event.status ?? event.error ?? "").replace(/\n$/, "");
          if (line) options.onProgress?.(line);
        },
      ),
    );
  } catch (err) {
    throw new ImagePrepareError(`building ${options.tag} from ${options.context} failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (failure) throw new ImagePrepareError(`building ${options.tag} from ${options.context} failed: ${failure}`);
  return { tag: options.tag };
}
