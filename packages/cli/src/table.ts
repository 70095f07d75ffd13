/** Columns padded to their widest cell, `gap` spaces apart (three, as `tether ls` prints them). */
export function formatTable(rows: string[][], gap = 3): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]))
        .join(" ".repeat(gap))
        .trimEnd(),
    )
    .join("\n");
}
