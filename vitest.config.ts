import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Suites share one machine with 2 cores and start real servers and databases;
    // a generous timeout keeps slow CI runs from flaking without hiding hangs.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: true,
    maxWorkers: 2,
    globalSetup: [],
  },
});
