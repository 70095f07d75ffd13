import { DockerBackend, prepareImage } from "@tether/host";
import { Command } from "commander";
import { progress } from "../sandboxes.js";

/** `tether image prepare IMAGE`: the derived image (image + agent bundle) for engines that cannot bind-mount. */
export function imageCommand(): Command {
  const image = new Command("image").summary("work with images (prepare)");
  image
    .command("prepare")
    .summary("build a derived image with the agent bundle in it; print its tag")
    .description(
      "Builds (or reuses) tether/prepared:<hash>: IMAGE plus the agent bundle at /.tether, tagged by a\n" +
        "hash of the image id and the bundle. For engines that cannot bind-mount the bundle.\n" +
        "Prints the tag on stdout.",
    )
    .argument("<image>", "a local image")
    .action(async (name: string) => {
      const backend = new DockerBackend();
      // Asking the engine first turns "not running" into a clear EngineUnavailableError.
      await backend.engine();
      const prepared = await prepareImage(backend.docker, name, await backend.bundle());
      progress(`${prepared.reused ? "reused" : "built"} ${prepared.tag} from ${name}`);
      process.stdout.write(`${prepared.tag}\n`);
    });
  return image;
}
