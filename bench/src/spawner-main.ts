import { renderTable } from "./report.js";
import { measureSpawners } from "./spawner.js";

// Only the spawner rows (`node bench/dist/src/spawner-main.js`); `npm run bench` runs them with the rest.
const result = await measureSpawners((text) => process.stderr.write(`bench: ${text}\n`));
process.stdout.write(`${renderTable(result.rows)}\n${JSON.stringify(result.timings, null, 2)}\n`);
