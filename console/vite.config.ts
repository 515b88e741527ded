import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The console is served by Kora at /console from dist/console (server/console.ts): everything it
// needs is in the bundle, so it works offline and sends nothing off the server's origin.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/console/",
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../dist/console", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
  },
});
