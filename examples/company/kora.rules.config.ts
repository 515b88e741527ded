/**
 * `npm start -- --config examples/company/kora.rules.config.ts`: the company example with the
 * denormalization declared in kora.rules.yaml instead of code.
 */
import { defineConfig } from "../../server/config.ts";

export default defineConfig({ rules: "kora.rules.yaml" });
