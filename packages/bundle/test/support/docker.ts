import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Runs the docker CLI; errors name the command and carry what docker printed. */
export async function docker(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run("docker", args, { encoding: "utf8", maxBuffer: 16 << 20 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: number | string };
    throw new Error(`docker ${args.join(" ")} failed (${e.code}): ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * Why Docker-backed tests cannot run here, or undefined when they can. In CI (CI=true) Docker
 * must be there, so this throws instead of giving a reason to skip.
 */
export async function dockerSkipReason(images: readonly string[]): Promise<string | undefined> {
  let reason: string | undefined;
  try {
    await docker("info", "--format", "{{.ServerVersion}}");
    const missing = [];
    for (const image of images) {
      if (!(await docker("image", "inspect", "--format", "{{.Id}}", image).catch(() => ""))) missing.push(image);
    }
    if (missing.length > 0) reason = `test images ${missing.join(", ")} are missing: run bash scripts/test-images.sh`;
  } catch (err) {
    reason = `Docker is not usable (start it with bash scripts/start-dockerd.sh): ${(err as Error).message}`;
  }
  if (reason && process.env.CI === "true") throw new Error(`CI needs Docker for these tests: ${reason}`);
  if (reason) console.log(`# skipping Docker-backed bundle tests: ${reason}`);
  return reason;
}

/** A container we started; removed with `remove()` whatever state it is in. */
export interface TestContainer {
  id: string;
  /** 127.0.0.1:PORT published for the container's port. */
  hostAddress(port: number): Promise<string>;
  logs(): Promise<string>;
  running(): Promise<boolean>;
  remove(): Promise<void>;
}

/** `docker run -d` with a label that marks the container as a test's, so strays can be found. */
export async function runContainer(args: readonly string[]): Promise<TestContainer> {
  const id = await docker("run", "-d", "--label", "tether.test=bundle", ...args);
  return {
    id,
    async hostAddress(port) {
      const mapping = (await docker("port", id, `${port}/tcp`)).split("\n")[0] ?? "";
      if (!mapping) throw new Error(`container ${id} publishes no host port for ${port}`);
      return mapping.replace(/^0\.0\.0\.0:/, "127.0.0.1:");
    },
    async logs() {
      try {
        const { stdout, stderr } = await run("docker", ["logs", "--tail", "50", id], { encoding: "utf8" });
        return `${stdout}${stderr}`.trim();
      } catch (err) {
        return `(no logs: ${(err as Error).message})`;
      }
    },
    async running() {
      return (await docker("inspect", "--format", "{{.State.Running}}", id).catch(() => "false")) === "true";
    },
    async remove() {
      await docker("rm", "-f", "-v", id).catch(() => {});
    },
  };
}
