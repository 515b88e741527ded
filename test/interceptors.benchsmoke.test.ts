import { it, expect } from "vitest";
import { measureRulesOverhead } from "../interceptors/bench.ts";
import { pgliteTarget } from "./helpers/db.ts";
it("bench smoke", async () => {
  const disposers: (() => Promise<void>)[] = [];
  const r = await measureRulesOverhead({
    seconds: 0.5,
    createStore: async () => {
      const c = await pgliteTarget.create();
      disposers.push(c.dispose);
      return c.store;
    },
  });

  for (const d of disposers) await d();
  expect(r.rules).toBeGreaterThan(0);
});
