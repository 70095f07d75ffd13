import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The image .ci/run builds; the bench never pulls. */
export const BUSYBOX_IMAGE = "tether-test/busybox";

/** A running busybox container for `docker exec` baselines. */
export interface DockerContainer {
  id: string;
  /** `docker exec <id> ARGV`, resolving when it ends; rejects on a non-zero exit. */
  exec(argv: string[]): Promise<void>;
  /** `docker exec <id> ARGV`, counting the stdout bytes read here. */
  execCountingStdout(argv: string[]): Promise<number>;
  remove(): Promise<void>;
}

/** Starts the container, or says why the docker rows cannot be measured. */
export async function startBusybox(): Promise<DockerContainer | { skipped: string }> {
  try {
    await run("docker", ["info", "--format", "{{.ServerVersion}}"]);
  } catch (err) {
    return { skipped: `docker info failed (${firstLine(err)})` };
  }
  try {
    await run("docker", ["image", "inspect", BUSYBOX_IMAGE]);
  } catch {
    return { skipped: `image ${BUSYBOX_IMAGE} is missing (built by .ci/run / scripts/test-images.sh)` };
  }
  const { stdout } = await run("docker", ["run", "-d", "--rm", BUSYBOX_IMAGE, "sleep", "3600"]);
  const id = stdout.trim();
  return {
    id,
    async exec(argv) {
      await run("docker", ["exec", id, ...argv]);
    },
    execCountingStdout(argv) {
      return new Promise((resolve, reject) => {
        const child = spawn("docker", ["exec", id, ...argv], { stdio: ["ignore", "pipe", "inherit"] });
        let bytes = 0;
        child.stdout.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
        });
        child.on("error", reject);
        child.on("close", (code) => (code === 0 ? resolve(bytes) : reject(new Error(`docker exec exited ${code}`))));
      });
    },
    async remove() {
      await run("docker", ["rm", "-f", id]).catch(() => {});
    },
  };
}

function firstLine(err: unknown): string {
  const text = (err as { stderr?: string }).stderr || (err instanceof Error ? err.message : String(err));
  return text.trim().split("\n")[0] ?? "";
}
