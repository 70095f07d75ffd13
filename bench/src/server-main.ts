import { renderTable } from "./report.js";
import { measureServer } from "./server.js";
import { measureServerScale } from "./server-scale.js";

// Only tether serve's rows (`node bench/dist/src/server-main.js`); `npm run bench` runs them with the rest.
const result = await measureServer((text) => process.stderr.write(`bench: ${text}\n`));
if ("skipped" in result) process.stdout.write(`server rows skipped: ${result.skipped}\n`);
else process.stdout.write(`${renderTable(result.rows)}\n${JSON.stringify(result.results, null, 2)}\n`);
const scaled = await measureServerScale((text) => process.stderr.write(`bench: ${text}\n`));
if ("skipped" in scaled) process.stdout.write(`server scale rows skipped: ${scaled.skipped}\n`);
else process.stdout.write(`${renderTable(scaled.rows)}\n${JSON.stringify(scaled.results, null, 2)}\n`);
