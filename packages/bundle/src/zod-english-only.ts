import path from "node:path";
import type { Plugin } from "esbuild";

/**
 * zod with its English messages only. zod's core module exports every locale it has (64) as
 * one namespace, so any use of zod bundled all of them: 400 KB to parse wherever a schema
 * loads (each `tether create`, an agent's first `/init`), for messages that are only ever
 * English here. Its locales index becomes English alone; other locales stay importable by
 * their own paths.
 */
export function zodEnglishOnly(): Plugin {
  return {
    name: "zod-english-only",
    setup(build) {
      build.onLoad({ filter: /[\\/]node_modules[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, (args) => ({
        contents: 'export { default as en } from "./en.js";\n',
        loader: "js",
        resolveDir: path.dirname(args.path),
      }));
    },
  };
}
