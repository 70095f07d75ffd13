import path from "node:path";
import { tapSupport, tetherHome } from "@tether/host";
import { Command, InvalidArgumentError } from "commander";
import { UnknownNamesError } from "../errors.js";
import { collectEnv } from "../options.js";
import { formatTable } from "../table.js";

async function templates() {
  const { Templates, openServerDatabase } = await import("@tether/server");
  const db = openServerDatabase(tetherHome());
  return { templates: new Templates(db), close: () => db.close() };
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!(n > 0)) throw new InvalidArgumentError(`${value} is not a positive number`);
  return n;
}

interface TemplateFlags {
  image: string;
  cpus?: number;
  memory?: number;
  env: Record<string, string>;
  network?: "none" | "bridge";
  backend?: "docker" | "vm";
}

/** `tether template create|ls|rm`: names (E2B template ids) for local images plus defaults. */
export function templateCommand(): Command {
  const template = new Command("template").summary("templates for tether serve (create, ls, rm)");
  template
    .command("create")
    .summary("name a local image as a template (no rebuild)")
    .description(
      "Registers NAME as a template: `Sandbox.create(NAME)` in the e2b SDK makes a sandbox of IMAGE,\n" +
        "with these defaults. Any local image works as is: the agent is mounted, not built in.\n" +
        "Arguments after the options replace the image's command.",
    )
    .argument("<name>", "the template id clients use (lower case)")
    .argument("[command...]", "the sandbox's supervised command, instead of the image's")
    .requiredOption("--image <image>", "a local image")
    .option("--cpus <n>", "CPU limit", positiveNumber)
    .option("--memory <MiB>", "memory limit in MiB", positiveNumber)
    .option("--env <KEY=VALUE>", "environment variable (repeatable)", collectEnv, {})
    .option("--network <mode>", "none (default; ports through the agent's tunnel) or bridge")
    .option("--backend <kind>", "docker (default) or vm (QEMU microVMs: pause keeps memory, fork restores it)")
    .action(async (name: string, command: string[], flags: TemplateFlags) => {
      if (flags.network !== undefined && flags.network !== "none" && flags.network !== "bridge") {
        throw new InvalidArgumentError(`--network ${flags.network}: none or bridge`);
      }
      if (flags.backend !== undefined && flags.backend !== "docker" && flags.backend !== "vm") {
        throw new InvalidArgumentError(`--backend ${flags.backend}: docker or vm`);
      }
      const { templates: store, close } = await templates();
      try {
        store.put(name, flags.image, {
          ...(flags.cpus !== undefined ? { cpus: flags.cpus } : {}),
          ...(flags.memory !== undefined ? { memoryMB: Math.round(flags.memory) } : {}),
          ...(Object.keys(flags.env).length > 0 ? { env: flags.env } : {}),
          ...(command.length > 0 ? { command } : {}),
          ...(flags.network !== undefined ? { network: flags.network } : {}),
          ...(flags.backend !== undefined ? { backend: flags.backend } : {}),
        });
      } finally {
        close();
      }
      // Where this host gives a vm's bridge a TAP, its VMs reach neither this machine nor each other.
      if (flags.backend === "vm" && flags.network === "bridge" && !(await tapSupport()).ok) {
        process.stderr.write(
          `tether: warning: template ${name} (vm, network bridge): its VMs get QEMU's user-mode NAT, through which they can also connect to services listening on this machine's loopback (at 10.0.2.2), this server's among them\n`,
        );
      }
    });
  template
    .command("build")
    .summary("build an image from a Dockerfile (through the engine) and name it as a template")
    .description(
      "Builds CONTEXT (default: the Dockerfile's directory) through the Engine API, streaming its\n" +
        "progress on stderr, tags it tether-template/NAME, and registers NAME as its template.",
    )
    .argument("<name>", "the template id clients use (lower case)")
    .argument("[context]", "the build context directory")
    .option("-f, --file <Dockerfile>", "the Dockerfile", "Dockerfile")
    .option("--cpus <n>", "CPU limit", positiveNumber)
    .option("--memory <MiB>", "memory limit in MiB", positiveNumber)
    .action(
      async (name: string, context: string | undefined, flags: { file: string; cpus?: number; memory?: number }) => {
        const { DockerBackend, buildImage } = await import("@tether/host");
        const dockerfile = path.resolve(flags.file);
        const dir = path.resolve(context ?? path.dirname(dockerfile));
        const relative = path.relative(dir, dockerfile);
        if (relative.startsWith("..") || path.isAbsolute(relative)) {
          throw new InvalidArgumentError(`the Dockerfile ${flags.file} must be inside the build context ${dir}`);
        }
        const backend = new DockerBackend();
        // Asking the engine first turns "not running" into a clear EngineUnavailableError.
        await backend.engine();
        const { tag } = await buildImage(backend.docker, {
          context: dir,
          dockerfile: relative,
          tag: `tether-template/${name}:latest`,
          onProgress: (line) => process.stderr.write(`${line}\n`),
        });
        const { templates: store, close } = await templates();
        try {
          store.put(name, tag, {
            ...(flags.cpus !== undefined ? { cpus: flags.cpus } : {}),
            ...(flags.memory !== undefined ? { memoryMB: Math.round(flags.memory) } : {}),
          });
        } finally {
          close();
        }
        process.stdout.write(`${tag}\n`);
      },
    );
  template
    .command("ls")
    .summary("list templates")
    .option("--json", "print a JSON array")
    .action(async (flags: { json?: boolean }) => {
      const { templates: store, close } = await templates();
      try {
        const list = store.list();
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        const rows = [["NAME", "IMAGE", "DEFAULTS"], ...list.map((t) => [t.name, t.image, JSON.stringify(t.defaults)])];
        process.stdout.write(`${formatTable(rows)}\n`);
      } finally {
        close();
      }
    });
  template
    .command("rm")
    .summary("remove templates (sandboxes made from them keep running)")
    .argument("<names...>")
    .action(async (names: string[]) => {
      const { templates: store, close } = await templates();
      try {
        const missing = names.filter((n) => !store.remove(n));
        if (missing.length > 0) throw new UnknownNamesError("template", missing);
      } finally {
        close();
      }
    });
  return template;
}
