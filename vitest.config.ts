import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // graphql 16 has no "exports" map: Node loads its CommonJS build, Vite would pick index.mjs.
    // Two copies of graphql in one process break `instanceof` checks ("another module or realm"),
    // so tests load the same build as Node does.
    alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }],
  },
  test: {
    include: ["test/**/*.test.ts"],
    // The fault suite is its own project (vitest.faults.config.ts, `npm run test:faults`).
    exclude: ["test/faults/**", "node_modules/**"],
    // Suites share one machine with 2 cores and start real servers and databases;
    // a generous timeout keeps slow CI runs from flaking without hiding hangs.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: true,
    maxWorkers: 2,
    globalSetup: [],
  },
});
