/**
 * Set-based batch writes (migration 8, `apply_merges_if`; core/store/sql.ts, `setBased`): a
 * batch of stamped merges that the store writes with one set-based statement must leave exactly
 * the rows that writing the same mutations one at a time leaves: leaves and their stamps,
 * tombstones, change log, counter and clock. Random batches over a small key space, so that
 * leaves collide with other items' leaves and ancestors (batches the store must write item by
 * item) as often as they do not.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatStamp } from "../core/hlc.ts";
import type { Store } from "../core/store.ts";
import { mutationFromInput } from "../core/tree.ts";
import type { Mutation } from "../core/types.ts";
import { type StoreTarget, type StoreTargetOptions, storeTargets } from "./helpers/db.ts";

type Entry = { path: string[]; value: number | { x: number } };

/** A merge tree from (path, value) entries; a later entry replaces what an earlier one put on its way. */
function treeOf(entries: Entry[]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const { path, value } of entries) {
    let node = root;
    path.forEach((key, i) => {
      if (i === path.length - 1) node[key] = value;
      else {
        const next = node[key];
        if (typeof next !== "object" || next === null || "x" in next) node[key] = {};
        node = node[key] as Record<string, unknown>;
      }
    });
  }
  return root;
}

const key = fc.constantFrom("a", "b", "c");
const entry = fc.record({
  path: fc.array(key, { minLength: 1, maxLength: 3 }),
  value: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.record({ x: fc.integer({ min: 0, max: 9 }) })),
});
const merge = fc.array(entry, { minLength: 1, maxLength: 3 });
/** "disjoint": item i writes under its own key (always independent); "shared": one key space. */
const round = fc.record({
  before: fc.array(entry, { minLength: 0, maxLength: 4 }),
  mode: fc.constantFrom("disjoint", "shared"),
  items: fc.array(merge, { minLength: 1, maxLength: 8 }),
});

interface Side {
  store: Store;
  schema: string;
  query(sql: string): Promise<Record<string, unknown>[]>;
  dispose(): Promise<void>;
}

async function dump(side: Side) {
  const s = `"${side.schema}"`;
  return {
    nodes: await side.query(`SELECT path, value::text AS value, ts FROM ${s}.nodes ORDER BY path COLLATE "C"`),
    tombstones: await side.query(`SELECT path, cover, shadow FROM ${s}.tombstones ORDER BY path COLLATE "C"`),
    changes: await side.query(`SELECT version::text AS version, mutation::text AS mutation, write_id, ts FROM ${s}.changes ORDER BY version`),
    meta: await side.query(`SELECT version::text AS version, clock FROM ${s}.meta`),
  };
}

async function side(target: StoreTarget, options: StoreTargetOptions): Promise<Side> {
  const created = await target.create({ poolSize: 4, ...options });
  const { query } = created;
  if (!query) throw new Error(`${target.name}: the target gives no query`);
  return { ...created, query };
}

describe.each(storeTargets())("set-based batch writes on $name", (target) => {
  let batched: Side;
  let reference: Side;
  const applied = { "set-based": 0, items: 0, "set-based, several": 0 };
  beforeAll(async () => {
    batched = await side(target, {
      setBasedMerges: true,
      onBatch: (how, n) => {
        applied[how]++;
        if (how === "set-based" && n > 1) applied["set-based, several"]++;
      },
    });
    reference = await side(target, { setBasedMerges: false });
  });
  afterAll(async () => {
    await batched?.dispose();
    await reference?.dispose();
  });

  let clock = Date.UTC(2026, 0, 1);
  let writeIds = 0;
  /** A stamped commit of `m`, as the gateway records server-stamped writes. */
  const stamped = (store: Store, m: Mutation, ts: string, writeId: string, hold?: Promise<void>) =>
    store.commit(async (tx) => {
      if (hold) await hold;
      tx.stamps?.record({ ts, tombstones: new Map(), covered: new Set(), writeId });
      return m;
    });

  it("leaves the rows that writing the batch's mutations one at a time leaves", async () => {
    await fc.assert(
      fc.asyncProperty(round, async ({ before, mode, items }) => {
        const round = `r${writeIds}`;
        const prefix = (i: number) => (mode === "disjoint" ? [round, `i${i}`] : [round]);
        const setup = mutationFromInput({ merge: { [round]: { ...treeOf(before), z: 1 } } });
        const setupTs = formatStamp(clock++, 0, "t");
        const setupId = `w${writeIds++}`;
        await stamped(batched.store, setup, setupTs, setupId);
        await stamped(reference.store, setup, setupTs, setupId);

        const planned = items.map((entries, i) => ({
          m: mutationFromInput({ merge: treeOf(entries.map((e) => ({ ...e, path: [...prefix(i), ...e.path] }))) }),
          ts: formatStamp(clock++, 0, "t"),
          writeId: `w${writeIds++}`,
        }));
        // Hold the first write's build open so the others queue up behind it as one batch.
        let open!: () => void;
        const held = new Promise<void>((resolve) => {
          open = resolve;
        });
        const [first, ...rest] = planned;
        const results = [stamped(batched.store, first!.m, first!.ts, first!.writeId, held), ...rest.map((p) => stamped(batched.store, p.m, p.ts, p.writeId))];
        open();
        const versions = (await Promise.all(results)).map((r) => r.version);
        // The reference writes them one at a time, in the order the batched store gave them.
        const order = planned.map((p, i) => ({ p, v: versions[i] as number })).sort((a, b) => a.v - b.v);
        for (const { p } of order) await stamped(reference.store, p.m, p.ts, p.writeId);
        expect(await dump(batched)).toEqual(await dump(reference));
      }),
      { numRuns: 60 },
    );
    // Both ways of writing a batch ran (else the property compared the old path with itself).
    expect(applied["set-based"]).toBeGreaterThan(10);
    expect(applied["set-based, several"]).toBeGreaterThan(5);
    expect(applied.items).toBeGreaterThan(5);
  }, 120_000);
});
