/**
 * GraphQL over HTTP, spec-exact: graphql-http's own server audits (every MUST and SHOULD) run
 * against a real Kora server, and GET is for queries only.
 */
import { serverAudits } from "graphql-http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgliteTarget } from "./helpers/db.ts";
import { type TestServer, startTestServer } from "./helpers/server.ts";

describe("GraphQL over HTTP", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(pgliteTarget);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("passes every MUST and SHOULD audit of graphql-http", async () => {
    const audits = serverAudits({ url: () => server.url });
    expect(audits.length).toBeGreaterThan(30);
    const failed: string[] = [];
    for (const audit of audits) {
      if (!audit.name.startsWith("MUST") && !audit.name.startsWith("SHOULD")) continue;
      const result = await audit.fn();
      if (result.status !== "ok") failed.push(`${audit.name}: ${result.reason}`);
    }
    expect(failed).toEqual([]);
  });

  it("refuses a mutation over GET with 405 and Allow: POST, writing nothing", async () => {
    const version = await server.kora.gateway.store.version();
    const query = encodeURIComponent('mutation { merge(path: ["get"], value: 1) { version } }');
    const res = await fetch(`${server.url}?query=${query}`, {
      headers: { accept: "application/graphql-response+json" },
    });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toMatch(/POST/);
    expect(await server.kora.gateway.store.version()).toBe(version);
  });
});
