import { defineConfig } from "vitest/config";

// The fault suite (test/faults): its own project, one file at a time (each starts a scratch
// PostgreSQL cluster and gateway processes), run by `npm run test:faults` and by CI.
export default defineConfig({
  resolve: { alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }] },
  test: {
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    maxWorkers: 1,
  },
});
