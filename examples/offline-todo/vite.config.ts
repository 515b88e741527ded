import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The app imports the client from the repository (../../client), so dev mode may read it.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  server: { fs: { allow: [fileURLToPath(new URL("../..", import.meta.url))] } },
  build: { target: "es2022", emptyOutDir: true },
});
