/** examples/typed-clients: typed Apollo Client and urql documents from `npm run codegen` work against Kora. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { apolloExample, urqlExample } from "../examples/typed-clients/index.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(pgliteTarget);
});
afterAll(async () => server?.close());

it("typed Apollo Client merges and reads", async () => {
  const r = (await apolloExample(server.url)) as { version: string; value: unknown };
  expect(Number(r.version)).toBeGreaterThan(0);
  expect(r.value).toEqual({ hello: "world" });
});

it("typed urql watches and merges", async () => {
  expect(await urqlExample(server.url, server.wsUrl)).toBe(42);
});

it("the client's wire documents are client/operations.graphql's operations, valid against schema.graphql", async () => {
  const { readFile } = await import("node:fs/promises");
  const { buildSchema, parse, print, validate } = await import("graphql");
  const { MUTATE_DOCUMENT, WATCH_DOCUMENT } = await import("../client/transport.ts");
  const schema = buildSchema(await readFile(new URL("../schema.graphql", import.meta.url), "utf8"));
  const file = parse(await readFile(new URL("../client/operations.graphql", import.meta.url), "utf8"));
  const byName = new Map(file.definitions.map((d) => [(d as { name?: { value: string } }).name?.value, print(d)]));
  for (const text of [WATCH_DOCUMENT, MUTATE_DOCUMENT]) {
    const doc = parse(text);
    expect(validate(schema, doc)).toEqual([]);
    const name = (doc.definitions[0] as { name?: { value: string } }).name?.value;
    expect(print(doc.definitions[0] as never)).toBe(byName.get(name));
  }
});
