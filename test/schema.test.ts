import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { printKoraSchema } from "../schema/index.ts";

it("schema.graphql matches the Pothos schema (run `npm run schema:print` after changing it)", () => {
  const committed = readFileSync(new URL("../schema.graphql", import.meta.url), "utf8");
  expect(printKoraSchema()).toBe(committed);
});

it("has the contract's operations and types", () => {
  // The offline client's optional `ts` and `writeId` arguments (docs/conflicts.md) are additive.
  const sdl = printKoraSchema().replaceAll(", ts: String, writeId: String)", ")");
  for (const line of [
    "path(path: [String!]!, min: String, max: String, limit: Int, reverse: Boolean): JSON",
    "merge(path: [String!]! = [], value: JSON!): MutationResult!",
    "delete(path: [String!]!): MutationResult!",
    "mutate(merge: JSONObject, delete: JSONObject): MutationResult!",
    "watch(path: [String!]!, since: String): WatchEvent!",
  ]) {
    expect(sdl).toContain(line);
  }
});
