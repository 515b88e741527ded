/**
 * Run with `npm start -- --config examples/company/kora.config.ts`: the company example with the
 * denormalization done by an interceptor. (examples/company/kora.rules.config.ts does it with rules.)
 */
import { defineConfig } from "../../server/config.ts";
import { companyEmployees } from "./interceptor.ts";

export default defineConfig({
  interceptors: [companyEmployees],
  // kora.rules.yaml beside this file does the same with rules: keep it out of this config.
  rules: false,
});
