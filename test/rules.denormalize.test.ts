/**
 * A denormalize target that is not a valid key rejects the whole mutation with BAD_USER_INPUT
 * naming the rule (as the same addition from an interceptor is rejected), over a real server;
 * nothing is written. A value without the field (a null target) still writes nothing, on purpose.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../core/gateway.ts";
import { type RulesEngine, createRulesEngine } from "../interceptors/rules.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { MERGE, type TestServer, http, merge, read, startTestServer } from "./helpers/server.ts";

const RULES = `rules:
  "/":
    read: "true"
    write: "true"
  "user:info/$uid":
    denormalize:
      - path: "company:employees/{value.company}/$uid"
        value: "1"
`;

describe("denormalize targets", () => {
  let server: TestServer;
  let rules: RulesEngine;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "kora-denorm-"));
    const file = join(dir, "kora.rules.yaml");
    writeFileSync(file, RULES);
    rules = createRulesEngine({ file, watch: false, log: silentLogger });
    server = await startTestServer(pgliteTarget, { interceptors: [rules.interceptor] });
  });
  afterAll(async () => {
    await server?.close();
    rules?.close();
  });

  it.each([
    ["an empty string", "", /computes an empty string/],
    ["a control character", "iron\u0001bay", /control character/],
    ["a newline", "iron\nbay", /control character/],
    ["a boolean", true, /not a string/],
  ])(
    "a target computed as %s is BAD_USER_INPUT naming the rule; nothing is written",
    async (_name, company, message) => {
      const version = await server.kora.gateway.store.version();
      const r = await http(server.url, MERGE, {
        path: ["user:info", "dax"],
        value: { name: "Dax", company },
      });
      expect(r.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
      expect(r.errors?.[0]?.message).toMatch(/denormalize target of rule "user:info\/\$uid"/);
      expect(r.errors?.[0]?.message).toMatch(message);
      expect(await server.kora.gateway.store.version()).toBe(version);
      expect(await read(server.url, ["user:info"])).toBeNull();
    },
  );

  it("a valid target is written with the mutation; a value without the field writes no target", async () => {
    await merge(server.url, ["user:info", "dax"], { name: "Dax", company: "ironbay" });
    expect(await read(server.url, ["company:employees"])).toEqual({ ironbay: { dax: 1 } });
    await merge(server.url, ["user:info", "yousef"], { name: "Yousef" });
    expect(await read(server.url, ["company:employees"])).toEqual({ ironbay: { dax: 1 } });
  });
});
