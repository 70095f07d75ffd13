import { readFileSync, statSync } from "node:fs";

/**
 * A colon-separated account file (/etc/passwd or /etc/group), the only user database every
 * image has (no NSS: the agent runs in images without glibc). Parsed once per change: each
 * look-up costs one stat, so accounts added or removed while the agent runs are seen at once.
 */
export class AccountFile {
  private rows: string[][] = [];
  private version = "";

  constructor(readonly path: string) {}

  /** The file's records, each split on ':'; empty when the file is missing. */
  records(): string[][] {
    const st = statSync(this.path, { throwIfNoEntry: false, bigint: true });
    const version = st ? `${st.ino}:${st.size}:${st.mtimeNs}` : "missing";
    if (version !== this.version) {
      this.version = version;
      this.rows = parse(st ? readText(this.path) : "");
    }
    return this.rows;
  }

  /** The first record whose field `index` equals `value` (first wins, as with getpwnam/getpwuid). */
  find(index: number, value: string): string[] | undefined {
    return this.records().find((r) => r[index] === value);
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function parse(text: string): string[][] {
  return text
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => l.split(":"));
}
