import os from "node:os";
import { measureConcurrentCreates } from "./creates.js";
import { renderTable } from "./report.js";

// Only the concurrent-create rows (`node bench/dist/src/creates-main.js`); `npm run bench` runs them with the rest.
const result = await measureConcurrentCreates((text) => process.stderr.write(`bench: ${text}\n`));
if ("skipped" in result) process.stdout.write(`concurrent create rows skipped: ${result.skipped}\n`);
else process.stdout.write(`${renderTable(result.rows)}\n${JSON.stringify(result.results, null, 2)}\n`);
process.stdout.write(
  `load average: ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}\n`,
);
