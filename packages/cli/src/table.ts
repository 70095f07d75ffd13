/** Columns padded to their widest cell, three spaces apart, as `tether ls` prints them. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}
