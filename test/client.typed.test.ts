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
