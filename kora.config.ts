/**
 * The default configuration `npm start` loads (use `npm start -- --config PATH` for another).
 * It is empty on purpose: no interceptors, no token verification, and no rules file, which means
 * EVERY CLIENT MAY READ AND WRITE EVERYTHING. Add a `kora.rules.yaml` beside this file (it is
 * picked up automatically; docs/rules.md) and `auth` (docs/auth.md) before exposing a server.
 * Examples: examples/company/kora.config.ts, examples/todo/kora.config.ts.
 */
import { defineConfig } from "./server/config.ts";

export default defineConfig({
  // interceptors: [],            // server-side logic, in order (docs/interceptors.md)
  // rules: "kora.rules.yaml",    // the default; false disables rules
  // auth: { jwt: { secret: process.env.KORA_JWT_SECRET ?? "", audience: "my-app" } },
  // limits: { maxMutationBytes: 4 * 1024 * 1024 },
});
