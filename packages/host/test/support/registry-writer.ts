// A separate process that records 10 sandboxes and updates each: run 20 at once against one home.
import { Registry } from "../../src/index.js";

const [home, writer] = process.argv.slice(2);
const registry = new Registry(home);
for (let i = 0; i < 10; i++) {
  const id = `w${writer.padStart(2, "0")}x${String(i).padStart(4, "0")}`;
  registry.insert({ id, name: `tether-${id}`, backend: "local", image: "host", state: "creating", labels: { writer } });
  registry.update(id, { state: "stopped" }, { event: { kind: "test" } });
}
registry.close();
