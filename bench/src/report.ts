import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/** One line of the results table. */
export interface Row {
  metric: string;
  unit: string;
  tether: number | null;
  baseline: number | null;
  baselineName: string;
  /** tether / baseline. */
  ratio: number | null;
  target: string;
  /** null when the row has no target or could not be measured. */
  met: boolean | null;
  note?: string;
}

function fmt(value: number | null, unit: string): string {
  if (value === null || Number.isNaN(value)) return "-";
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${unit}`;
}

/** The table printed on stdout. */
export function renderTable(rows: Row[]): string {
  const header = ["metric", "tether", "baseline", "ratio", "target", "met?"];
  const lines = rows.map((r) => [
    r.metric,
    fmt(r.tether, r.unit),
    r.baseline === null
      ? r.baselineName
        ? `(${r.baselineName}: -)`
        : "-"
      : `${fmt(r.baseline, r.unit)} ${r.baselineName}`,
    r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`,
    r.target,
    r.met === null ? "-" : r.met ? "yes" : "NO",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...lines.map(line)].join("\n");
}

/** Writes the full results as JSON to bench/results/<timestamp>.json and returns the path. */
export function writeResults(dir: string, data: unknown): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}
