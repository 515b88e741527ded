/**
 * The embedded store does not stall the gateway (issue 8, item 7): PGlite runs in a worker thread,
 * big writes go in chunks with reads of untouched paths answered between them, and the gateway's
 * own work on a big merge yields. A worker that dies fails its pending operations; a data folder
 * created by the first start is reopened by the next.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Client } from "graphql-ws";
import { afterEach, describe, expect, it } from "vitest";
import { type PgliteDatabase, createPgliteStore, openPglite } from "../core/store/index.ts";
import type { Store } from "../core/store.ts";
import type { Mutation } from "../core/types.ts";
import { wsClient } from "./helpers/clients.ts";
import { pgliteTarget } from "./helpers/db.ts";
import { EventQueue } from "./helpers/events.ts";
import {
  MERGE,
  PATH,
  WATCH,
  type TestServer,
  http,
  merge,
  startTestServer,
} from "./helpers/server.ts";

const LEAVES = 100_000;
const BOUND_MS = 500;

describe("a 100,000-leaf merge on PGlite", () => {
  let server: TestServer | undefined;
  let client: Client | undefined;
  afterEach(async () => {
    await client?.dispose();
    await server?.close();
    client = undefined;
    server = undefined;
  });

  it(`leaves reads of other keys and new watches of other paths answered within ${BOUND_MS} ms`, { timeout: 180_000 }, async () => {
    server = await startTestServer(pgliteTarget);
    const { url } = server;
    await merge(url, ["other", "key"], "untouched");
    await merge(url, ["elsewhere", "x"], 1);
    const big: Record<string, number> = {};
    for (let i = 0; i < LEAVES; i++) big[`k${String(i).padStart(6, "0")}`] = i;

    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    let done = false;
    // The body is built before the clock starts: only the gateway's work is measured.
    const body = JSON.stringify({
      query: MERGE.replace("{ version merge delete }", "{ version }"),
      variables: { path: ["big"], value: big },
    });
    lag.reset();
    const started = performance.now();
    const writing = fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    })
      .then((res) => res.json() as Promise<{ errors?: unknown }>)
      .finally(() => {
        done = true;
      });

    // Reads one after the other for as long as the merge runs (bounded: it ends within the
    // test's timeout), each timed on its own.
    const readTimes: number[] = [];
    const watchTimes: number[] = [];
    client = wsClient(server.wsUrl);
    for (let i = 0; !done && i < 10_000; i++) {
      const t0 = performance.now();
      const r = await http<{ path: unknown }>(url, PATH, { path: ["other"] });
      expect(r.errors).toBeUndefined();
      expect(r.data?.path).toEqual({ key: "untouched" });
      if (!done) readTimes.push(performance.now() - t0);

      // A watch of another path started now gets its snapshot (its first event) in time.
      const events = new EventQueue<{ snapshot: boolean; merge: unknown }>();
      const t1 = performance.now();
      const stop = client.subscribe<{ watch: { snapshot: boolean; merge: unknown } }>(
        { query: WATCH, variables: { path: ["elsewhere"] } },
        {
          next: (m) => events.push(m.data?.watch as { snapshot: boolean; merge: unknown }),
          error: (e) => events.fail(e),
          complete: () => {},
        },
      );
      const first = await events.next();
      stop();
      expect(first).toMatchObject({ snapshot: true, merge: { elsewhere: { x: 1 } } });
      if (!done) watchTimes.push(performance.now() - t1);
    }
    const result = await writing;
    lag.disable();
    const mergeMs = performance.now() - started;
    expect(result.errors).toBeUndefined();
    const worst = (xs: number[]) => Math.round(Math.max(...xs));
    console.log(
      `100,000-leaf merge: ${Math.round(mergeMs)} ms; ${readTimes.length} reads during it, slowest ${worst(readTimes)} ms; ` +
        `${watchTimes.length} new watches, slowest ${worst(watchTimes)} ms; event loop blocked at most ${Math.round(lag.max / 1e6)} ms`,
    );
    // The merge must have been long enough for the reads to prove something.
    expect(readTimes.length).toBeGreaterThanOrEqual(3);
    expect(watchTimes.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...readTimes)).toBeLessThan(BOUND_MS);
    expect(Math.max(...watchTimes)).toBeLessThan(BOUND_MS);

    // And it committed whole, as one version.
    const read = await http<{ path: Record<string, number> }>(url, PATH, { path: ["big"] });
    expect(Object.keys(read.data?.path ?? {}).length).toBe(LEAVES);
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
