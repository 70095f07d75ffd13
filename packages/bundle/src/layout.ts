import { tetherdNodeFlags } from "@tether/protocol/constants";
import { NODE_RUNTIME } from "./runtime.js";

/** Where a bundle is mounted inside a sandbox, and the argv that starts the agent from there. */
export const DEFAULT_MOUNT_POINT = "/.tether";

/** The glibc loader's file name inside the bundle's lib/. */
export const LOADER_NAME = "ld-linux-x86-64.so.2";

/** The port tetherd listens on inside a container unless told otherwise. */
export const AGENT_CONTAINER_PORT = 49983;

/** The Node flags tetherd runs with on the bundle's own Node (its compile cache is made with them). */
export const BUNDLE_NODE_FLAGS = tetherdNodeFlags(Number(NODE_RUNTIME.version.split(".")[0]));

/**
 * The argv that starts tetherd from a bundle mounted at `mountPoint`, followed by `flags`.
 *
 * The bundled loader runs the bundled node with `--library-path` rather than LD_LIBRARY_PATH,
 * so nothing of the image is used and processes the agent starts inherit no bundle libraries.
 */
export function agentCommand(mountPoint: string = DEFAULT_MOUNT_POINT, flags: readonly string[] = []): string[] {
  if (!mountPoint.startsWith("/")) throw new TypeError(`mount point must be an absolute path, got ${mountPoint}`);
  const root = mountPoint.replace(/\/+$/, "");
  return [
    `${root}/lib/${LOADER_NAME}`,
    "--library-path",
    `${root}/lib`,
    `${root}/bin/node`,
    ...BUNDLE_NODE_FLAGS,
    `${root}/tetherd.js`,
    ...flags,
  ];
}
