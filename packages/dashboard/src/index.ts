import { fileURLToPath } from "node:url";

/** The dashboard's built page and assets (Vite's output), which `tether serve` serves at `/`. */
export const assetsDir: string = fileURLToPath(new URL("../web", import.meta.url));
