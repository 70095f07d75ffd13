import { type BuiltBundle, buildBundle } from "./build.js";

/** `tether bundle --out DIR`: builds (or reuses) the bundle and says what is where. */
export async function bundleCommand(
  outDir?: string,
  out: NodeJS.WritableStream = process.stdout,
): Promise<BuiltBundle> {
  const bundle = await buildBundle({ outDir });
  const mib = (bundle.size / (1 << 20)).toFixed(1);
  out.write(
    [
      `${bundle.reused ? "reused" : "built"} tether bundle ${bundle.contentHash.slice(0, 16)} in ${bundle.dir}`,
      `  agent ${bundle.agentVersion}, node ${bundle.nodeVersion}, ${bundle.files.length} files, ${mib} MiB`,
      `  start (mounted at ${bundle.mountPoint}): ${bundle.command.join(" ")} [tetherd flags]`,
      "",
    ].join("\n"),
  );
  return bundle;
}
