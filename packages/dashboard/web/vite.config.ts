import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The page is served by `tether serve` at `/`; everything it loads is bundled here (no CDN at run time).
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
});
