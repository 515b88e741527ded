/**
 * The todo example: per-user todos enforced by kora.rules.yaml, tokens verified with an HS256
 * secret. `KORA_JWT_SECRET=<32+ chars> npm start -- --config examples/todo/kora.config.ts`.
 */
import { defineConfig } from "../../server/config.ts";

export default defineConfig({
  rules: "kora.rules.yaml",
  auth: {
    jwt: {
      secret: process.env.KORA_JWT_SECRET ?? "change-me-change-me-change-me-change-me",
      audience: "kora-todo",
    },
  },
});
