import { renderTable } from "./report.js";
import { measureSandbox } from "./sandbox.js";

// Only the Docker sandbox rows (`node bench/dist/src/sandbox-main.js`); `npm run bench` runs them with the rest.
const result = await measureSandbox((text) => process.stderr.write(`bench: ${text}\n`));
if ("skipped" in result) process.stdout.write(`sandbox rows skipped: ${result.skipped}\n`);
else process.stdout.write(`${renderTable(result.rows)}\n${JSON.stringify(result.results, null, 2)}\n`);
