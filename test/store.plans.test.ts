/**
 * Plans that outlive a small table (migration 9, core/store/postgres.ts): a connection that
 * planned Kora's statements right after an ANALYZE of an empty `nodes` table must still reach
 * rows through the primary key once the table holds 50,000 rows. Counted, not timed:
 * PostgreSQL's `seq_scan` counter of the table stays where it was while the store writes (both
 * batch statements) and reads through its one connection (server PostgreSQL: the pool's
 * setting covers the prepared reads; PGlite: the functions' own setting covers the writes).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatStamp } from "../core/hlc.ts";
import type { Store } from "../core/store.ts";
import { deleteAt, mergeAt } from "../core/tree.ts";
import type { Mutation } from "../core/types.ts";
import { storeTargets } from "./helpers/db.ts";

describe.each(storeTargets())("plans on $name", (target) => {
  let store: Store;
  let query: (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;
  let dispose: () => Promise<void>;
  let schema: string;
  let clock = Date.UTC(2026, 0, 1);

  beforeAll(async () => {
    // One connection on server PostgreSQL: the one whose plans are watched.
    const created = await target.create({ poolSize: 1 });
    ({ store, schema, dispose } = created);
    const q = created.query;
    if (!q) throw new Error(`${target.name}: the target gives no query`);
    // PGlite's one backend reports its counters when asked to; server backends on their own.
    query =
      target.name === "pglite"
        ? async (sql, params) => {
            await q("SELECT pg_stat_force_next_flush()");
            return q(sql, params);
          }
        : q;
  });
  afterAll(async () => {
    await dispose?.();
  });

  /** A server-stamped commit (the set-based statement) or, with a delete part, the item-by-item one. */
  const commit = (m: Mutation) =>
    store.commit(async (tx) => {
      tx.stamps?.record({ ts: formatStamp(clock++, 0, "t"), tombstones: new Map(), covered: new Set() });
      return m;
    });

  async function counters(): Promise<{ seq: number; ins: number }> {
    const rows = await query(
      "SELECT seq_scan::text AS seq, n_tup_ins::text AS ins FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'nodes'",
      [schema],
    );
    return { seq: Number(rows[0]?.seq ?? 0), ins: Number(rows[0]?.ins ?? 0) };
  }

  /** Backends report their counters when idle, at most once a second: waits (bounded) for `ins`. */
  async function reported(ins: number): Promise<{ seq: number; ins: number }> {
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < 300; i++) {
      const c = await counters();
      if (c.ins >= ins || Date.now() > deadline) return c;
      await new Promise((r) => setTimeout(r, 100));
    }
    return counters();
  }

  /** Each round: 10 new leaves set-based, 10 new leaves beside a delete, 10 reads of each kind. */
  async function round(tag: string) {
    for (let i = 0; i < 10; i++) await commit(mergeAt(["app", tag, `s${i}`], i));
    for (let i = 0; i < 10; i++) {
      const m = mergeAt(["app", tag, `d${i}`], i);
      await commit({ ...m, delete: deleteAt(["app", tag, `s${i}`]).delete });
    }
    for (let i = 0; i < 10; i++) {
      await store.read([{ path: ["app", tag] }]);
      await store.read([{ path: ["app"], options: { limit: 2 } }]);
    }
  }

  it("keeps reaching nodes by index after an ANALYZE of the empty table", async () => {
    await query(`ANALYZE "${schema}".nodes`);
    await round("before"); // plans made now see an empty table
    await query(
      `INSERT INTO "${schema}".nodes SELECT $1 || lpad(i::text, 6, '0') || chr(1), to_jsonb(i), NULL FROM generate_series(1, 50000) i`,
      ["\u0001filler\u0001"],
    );
    const before = await reported(50_000 + 20);
    expect(before.ins).toBeGreaterThanOrEqual(50_020);
    await round("after");
    const after = await reported(before.ins + 20);
    expect(after.ins).toBeGreaterThanOrEqual(before.ins + 20);
    expect(after.seq - before.seq).toBe(0);
    expect(Object.keys((await store.read([{ path: ["app", "after"] }])).values[0] as object).length).toBe(10);
  }, 90_000);
});
