/**
 * The embedded store does not stall the gateway (issue 8, item 7): PGlite runs in a worker thread,
 * big writes go in chunks with reads of untouched paths answered between them, and the gateway's
 * own work on a big merge yields. A worker that dies fails its pending operations; a data folder
 * created by the first start is reopened by the next.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type PgliteDatabase, createPgliteStore, openPglite } from "../core/store/index.ts";
import type { Store } from "../core/store.ts";
import { createGateway } from "../core/gateway.ts";
import { deleteAt, mergeAt, mutationFromInput } from "../core/tree.ts";
import type { Mutation } from "../core/types.ts";
import { pgliteTarget, sharedDatabase, uniqueSchema } from "./helpers/db.ts";
import {
  MERGE,
  PATH,
  type TestServer,
  http,
  startTestServer,
} from "./helpers/server.ts";


describe("a big merge validated in groups of keys", () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("fails whole, with the message a small one gets, on a bad key deep inside", async () => {
    server = await startTestServer(pgliteTarget);
    const { url } = server;
    const bad = "bad\u0001key";
    const big: Record<string, unknown> = {};
    for (let i = 0; i < 5000; i++) big[`k${i}`] = i === 4500 ? { [bad]: 1 } : i;
    const r = await http(url, MERGE, { path: ["g"], value: big });
    const small = await http(url, MERGE, { path: ["g"], value: { k4500: { [bad]: 1 } } });
    expect(r.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    expect(r.errors?.[0]?.message).toBe(small.errors?.[0]?.message);
    expect(await http(url, PATH, { path: ["g"] })).toEqual({ data: { path: null } });
    // And a good one keeps every key, __proto__ included, as plain data.
    big.k4500 = 4500;
    Object.defineProperty(big, "__proto__", { value: "plain", enumerable: true });
    expect((await http(url, MERGE.replace("{ version merge delete }", "{ version }"), { path: ["g"], value: big })).errors).toBeUndefined();
    const back = (await http<{ path: Record<string, unknown> }>(url, PATH, { path: ["g"] })).data?.path ?? {};
    expect(Object.keys(back).length).toBe(5001);
    expect(Object.getOwnPropertyDescriptor(back, "__proto__")?.value).toBe("plain");
  });
});

describe("the PGlite worker", () => {
  let database: PgliteDatabase | undefined;
  let store: Store | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await store?.close();
    await database?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    store = database = dir = undefined;
  });

  it("fails pending operations with an error when the worker dies, and every later one", async () => {
    database = await openPglite();
    // A statement long enough to be pending when the worker goes.
    const pending = database.query("SELECT count(*) FROM generate_series(1, 50000000)");
    const inTx = database.transaction(async (tx) => {
      await tx.query("SELECT 1");
      return "committed";
    });
    await database.terminate();
    await expect(pending).rejects.toThrow(/PGlite worker exited/);
    await expect(inTx).rejects.toThrow(/PGlite worker exited/);
    await expect(database.query("SELECT 1")).rejects.toThrow(/PGlite worker exited/);
  });

  it("routes a transaction's statements into the worker's open transaction, and rolls back on error", async () => {
    database = await openPglite();
    await database.exec("CREATE TABLE t (x int)");
    await expect(
      database.transaction(async (tx) => {
        await tx.query("INSERT INTO t VALUES (1)");
        expect(await tx.query("SELECT count(*)::int AS n FROM t")).toEqual([{ n: 1 }]);
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    expect(await database.query("SELECT count(*)::int AS n FROM t")).toEqual([{ n: 0 }]);
    // An error from PostgreSQL keeps its SQLSTATE across the channel (core/store/sql.ts maps it).
    await expect(database.query("SELECT nope")).rejects.toMatchObject({ code: "42703" });
  });

  it("creates the database in a data folder on first start and reopens it on the next", async () => {
    dir = mkdtempSync(join(tmpdir(), "kora-pglite-"));
    const m: Mutation = {
      merge: Object.assign(Object.create(null), { a: { b: "kept" } }),
      delete: Object.create(null),
    };
    store = await createPgliteStore({ dataDir: dir, schema: "kora" });
    const { version } = await store.commit(async () => m);
    await store.close();
    store = await createPgliteStore({ dataDir: dir, schema: "kora" });
    expect(await store.read([{ path: ["a"] }])).toEqual({ version, values: [{ b: "kept" }] });
  });
});

describe("chunked writes", () => {
  it("leave exactly what one statement leaves: rows, tombstones, change log, counter", async () => {
    const database = await sharedDatabase();
    const schemas = [uniqueSchema(), uniqueSchema()];
    // Two leaves per statement against one statement per batch.
    const gateways = await Promise.all(
      [2, 1e9].map(async (chunkLeaves, i) =>
        createGateway({ store: await createPgliteStore({ database, schema: schemas[i] as string, chunkLeaves }), retention: { intervalMs: 0 } }),
      ),
    );
    try {
      const steps: Mutation[][] = [
        [mergeAt(["a"], { x: 1, y: { z: 2, w: 3, u: { t: 4 } }, v: [1, { k: 2 }] }), mergeAt(["b"], "leaf")],
        [mergeAt(["b"], { obj: 1, o2: { p: 2, q: 3 } })], // an object over a leaf
        [mergeAt(["a", "y"], "a leaf over a subtree")],
        [mutationFromInput({ delete: { a: { x: true }, c: true }, merge: { c: { d: 1, e: 2, f: 3 }, a: { n: { m: 1 } } } })],
        [deleteAt(["b"]), mergeAt(["d"], { e: 1 }), mergeAt(["d", "e"], { f: 2, g: 3 }), deleteAt(["a", "v"])], // one batch
      ];
      for (const batch of steps) {
        for (const g of gateways) await Promise.all(batch.map((m) => g.commit(m)));
      }
      const dump = async (schema: string) => ({
        nodes: await database.query(`SELECT path, value::text AS v FROM "${schema}".nodes ORDER BY path COLLATE "C"`),
        tombstones: await database.query(`SELECT path FROM "${schema}".tombstones ORDER BY path COLLATE "C"`),
        changes: await database.query(`SELECT version::text, mutation::text FROM "${schema}".changes ORDER BY version`),
        meta: await database.query(`SELECT version::text FROM "${schema}".meta`),
      });
      const [chunked, whole] = await Promise.all(schemas.map(dump));
      expect(chunked).toEqual(whole);
      expect(whole?.tombstones.length).toBeGreaterThan(0);
      expect(whole?.meta).toEqual([{ version: "9" }]);
    } finally {
      for (const g of gateways) await g.close();
      for (const schema of schemas) await database.exec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
});
