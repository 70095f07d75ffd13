import { renderTable } from "./report.js";
import { measureTerminal } from "./terminal.js";

// Only the terminal's row (`node bench/dist/src/terminal-main.js`); `npm run bench` runs it with the rest.
const result = await measureTerminal((text) => process.stderr.write(`bench: ${text}\n`));
if ("skipped" in result) process.stdout.write(`terminal row skipped: ${result.skipped}\n`);
else process.stdout.write(`${renderTable(result.rows)}\n${JSON.stringify(result.results, null, 2)}\n`);
