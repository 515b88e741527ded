// The page is served by Vite (another origin than Kora's): its origin must be allowed, or Kora
// refuses its WebSocket upgrade (docs/security.md, "Serving a browser app from another origin").
import { defineConfig } from "../../server/config.ts";

export default defineConfig({
  rules: false,
  cors: { origins: ["http://localhost:5173", "http://127.0.0.1:5173"] },
});
