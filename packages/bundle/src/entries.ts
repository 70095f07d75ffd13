/** One file of a bundle: where it goes, its mode, and its bytes (a host file or data made in memory). */
export interface BundleEntry {
  /** Path inside the bundle, `/`-separated, no leading slash. */
  path: string;
  mode: 0o755 | 0o644;
  source: { file: string } | { data: Uint8Array };
}
