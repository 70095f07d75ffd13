import { renderTable } from "./report.js";
import { measureVm } from "./vm.js";

// Only the vm rows (`node bench/dist/src/vm-main.js`); `npm run bench` runs them with the rest.
const result = await measureVm((text) => process.stderr.write(`bench: ${text}\n`));
if ("skipped" in result) process.stdout.write(`vm rows skipped: ${result.skipped}\n`);
else process.stdout.write(`${renderTable(result.rows)}\n${JSON.stringify(result.results, null, 2)}\n`);
