/**
 * Store conformance: the same suite, unchanged, against every store (PGlite always, server
 * PostgreSQL when DATABASE_URL is set). Each test gets a fresh PostgreSQL schema, dropped after.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Store } from "../core/store.ts";
import { deleteAt, mergeAt, mutationFromInput } from "../core/tree.ts";
import type { Mutation, ReadOptions } from "../core/types.ts";
import { storeTargets } from "./helpers/db.ts";

const EXAMPLE = {
  "user:info": {
    dax: { name: "Dax", company: "ironbay" },
    yousef: { name: "Yousef", company: "ironbay" },
  },
  "company:info": { ironbay: { name: "Ironbay", city: "New York" } },
  "company:employees": { ironbay: { dax: 1493337757300, yousef: 1493337757300 } },
};

const plain = (v: unknown) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

describe.each(storeTargets())("store conformance on $name", (target) => {
  let store: Store;
  let dispose: () => Promise<void>;
  beforeEach(async () => {
    ({ store, dispose } = await target.create());
  });
  afterEach(async () => {
    await dispose();
  });

  const commit = (m: Mutation) => store.commit(async () => m);
  const get = async (path: string[], options?: ReadOptions) => plain((await store.read([{ path, options }])).values[0]);

  it("writes the contract's example tree and reads it back, whole and in parts", async () => {
    const r = await commit(mutationFromInput({ merge: EXAMPLE }));
    expect(r.version).toBe(1);
    expect(await get([])).toEqual(EXAMPLE);
    expect(await get(["user:info", "dax"])).toEqual(EXAMPLE["user:info"].dax);
    expect(await get(["company:employees", "ironbay", "dax"])).toBe(1493337757300);
    expect(await get(["nobody"])).toBeUndefined();
    expect(await get(["user:info", "dax", "name", "under a leaf"])).toBeUndefined();
  });

  it("merges: objects merge key by key, a leaf replaces a subtree, an object replaces a leaf", async () => {
    await commit(mergeAt(["a"], { x: 1, y: { z: 2 } }));
    await commit(mergeAt(["a"], { y: { w: 3 } }));
    expect(await get(["a"])).toEqual({ x: 1, y: { z: 2, w: 3 } });
    await commit(mergeAt(["a", "y"], "leaf"));
    expect(await get(["a"])).toEqual({ x: 1, y: "leaf" });
    await commit(mergeAt(["a", "y", "deep"], [1, null, { k: "v" }]));
    expect(await get(["a"])).toEqual({ x: 1, y: { deep: [1, null, { k: "v" }] } });
    await commit(mergeAt(["a", "x"], { replaced: true }));
    expect(await get(["a", "x"])).toEqual({ replaced: true });
    await commit(mergeAt(["a"], {})); // merging {} writes nothing
    expect(await get(["a"])).toEqual({ x: { replaced: true }, y: { deep: [1, null, { k: "v" }] } });
  });

  it("deletes: subtrees go, the last child takes its parents with it, absent paths still commit", async () => {
    await commit(mergeAt(["a", "b", "c"], 1));
    await commit(mergeAt(["k"], 1));
    const v = (await commit(deleteAt(["a", "b", "c"]))).version;
    expect(await get(["a"])).toBeUndefined(); // empty objects vanish up to the root
    expect(await get([])).toEqual({ k: 1 });
    const absent = await commit(deleteAt(["nothing", "here"]));
    expect(absent.version).toBe(v + 1);
    expect(absent.empty).toBe(false);
  });

  it("applies deletes before merges in one mutation", async () => {
    await commit(mergeAt(["a"], { old: 1, keep: 2 }));
    await commit(mutationFromInput({ delete: { a: true }, merge: { a: { x: 1 } } }));
    expect(await get(["a"])).toEqual({ x: 1 });
  });

  it("an empty mutation commits nothing and carries the current version", async () => {
    await commit(mergeAt(["a"], 1));
    const r = await commit(mutationFromInput({ merge: { a: {} } }));
    expect(r).toMatchObject({ version: 1, empty: true });
    expect(await store.version()).toBe(1);
    expect(await store.changes(0, 10)).toHaveLength(1);
  });

  it("selects children with min, max, limit and reverse in byte order", async () => {
    const children: Record<string, unknown> = { a: 1, b: { deep: { x: 1, y: 2, z: 3 } }, c: 3, d: 4, é: 5, Z: 6, "a b": 7, ab: 8 };
    await commit(mergeAt(["s"], children));
    const keys = async (o?: ReadOptions) => Object.keys(((await get(["s"], o)) ?? {}) as object).sort();
    expect(await keys({ limit: 2 })).toEqual(["Z", "a"]);
    expect(await keys({ limit: 3 })).toEqual(["Z", "a", "a b"]);
    expect(await keys({ limit: 2, reverse: true })).toEqual(["d", "é"]);
    expect(await keys({ min: "b", max: "d" })).toEqual(["b", "c"]);
    expect(await keys({ min: "a", max: "b" })).toEqual(["a", "a b", "ab"]);
    expect(await keys({ min: "b", limit: 2 })).toEqual(["b", "c"]); // b's three leaves count once
    expect(await keys({ max: "c", limit: 2, reverse: true })).toEqual(["ab", "b"]);
    expect(await get(["s"], { min: "\u00ff" })).toBeUndefined();
    expect(await get(["s"], { limit: 5, min: "zzz" })).toEqual({ é: 5 }); // é is 0xC3 0xA9, after z
    expect(await get(["s"], { limit: 5, min: "\u00ff", reverse: true })).toBeUndefined();
    expect(await get(["s", "a"], { limit: 1, min: "x" })).toBe(1); // options are ignored on a leaf
    expect(await get(["s"], { limit: 100 })).toEqual(children);
  });

  it("keeps keys with _, %, /, ., :, spaces, emoji, __proto__, constructor apart", async () => {
    const keys = ["_", "%", "/", ".", ":", " ", "a b", "🎉", "__proto__", "constructor", "a", "a ", "ab", "a_b", "a%", "a_", "日本"];
    const value = Object.create(null) as Record<string, unknown>;
    keys.forEach((k, i) => {
      value[k] = { n: i };
    });
    await commit(mergeAt(["k"], value));
    for (const [i, k] of keys.entries()) expect(await get(["k", k, "n"]), k).toBe(i);
    await commit(deleteAt(["k", "a_"]));
    await commit(deleteAt(["k", "a%"]));
    await commit(deleteAt(["k", "_"]));
    const left = Object.keys((await get(["k"])) as object).sort();
    expect(left).toEqual(keys.filter((k) => !["a_", "a%", "_"].includes(k)).sort());
    expect(({} as Record<string, unknown>).n).toBeUndefined();
  });

  it("gives contiguous versions to concurrent commits and logs them in order (group commit)", async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => commit(mergeAt(["g", `k${i}`], i))));
    const versions = results.map((r) => r.version).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const log = await store.changes(0, 100);
    expect(log.map((c) => c.version)).toEqual(versions);
    for (const c of log) {
      const r = results.find((x) => x.version === c.version)!;
      expect(plain(c.mutation)).toEqual(plain(r.mutation));
    }
    expect(await store.changes(48, 100)).toHaveLength(2);
    expect(await store.changes(0, 5)).toHaveLength(5);
  });

  it("a build that throws aborts only its own mutation", async () => {
    const outcomes = await Promise.allSettled([
      commit(mergeAt(["x", "a"], 1)),
      store.commit(async (tx) => {
        await tx.read(["x"]);
        throw new Error("rejected by an interceptor");
      }),
      commit(mergeAt(["x", "b"], 2)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(await get(["x"])).toEqual({ a: 1, b: 2 });
    expect((await store.changes(0, 10)).map((c) => c.version)).toEqual([1, 2]);
  });

  it("a build reads current data through the write transaction", async () => {
    await commit(mergeAt(["user:info", "dax", "company"], "ironbay"));
    const r = await store.commit(async (tx) => {
      const company = await tx.read(["user:info", "dax", "company"]);
      return mergeAt(["company:employees", String(company), "dax"], 1);
    });
    expect(plain(r.mutation.merge)).toEqual({ "company:employees": { ironbay: { dax: 1 } } });
  });

  it("reads several paths in one call from one snapshot", async () => {
    await commit(mutationFromInput({ merge: EXAMPLE }));
    const { version, values } = await store.read([
      { path: ["user:info", "dax"] },
      { path: ["company:info"] },
      { path: ["nothing"] },
      { path: ["user:info"], options: { limit: 1 } },
    ]);
    expect(version).toBe(1);
    expect(values[2]).toBeUndefined();
    expect(plain(values)).toEqual([EXAMPLE["user:info"].dax, EXAMPLE["company:info"], null, { dax: EXAMPLE["user:info"].dax }]);
  });

  it("trims the change log by age and count, and reports its oldest version", async () => {
    for (let i = 0; i < 5; i++) await commit(mergeAt(["t"], i));
    expect(await store.oldestVersion()).toBe(1);
    expect(await store.trim({ keep: 100, maxAgeMs: 0 })).toBe(0); // kept: fewer than 100 behind
    expect(await store.trim({ keep: 2, maxAgeMs: 3_600_000 })).toBe(0); // kept: younger than an hour
    expect(await store.trim({ keep: 2, maxAgeMs: 0 })).toBe(3);
    expect(await store.oldestVersion()).toBe(4);
    expect(await store.version()).toBe(5);
  });

  it("announces commits on its feed", async () => {
    const heard = new Promise<number>((resolve) => {
      const off = store.feed.subscribe((v) => {
        off();
        resolve(v);
      });
    });
    const r = await commit(mergeAt(["f"], 1));
    expect(await heard).toBeGreaterThanOrEqual(r.version);
  });

  it("loads 100,000 leaves and reads a 1,000-leaf subtree with an index range scan", async () => {
    for (let batch = 0; batch < 20; batch++) {
      const value: Record<string, Record<string, number>> = {};
      for (let i = 0; i < 5; i++) {
        const group: Record<string, number> = {};
        for (let j = 0; j < 1000; j++) group[`leaf${j}`] = j;
        value[`g${batch * 5 + i}`] = group;
      }
      await commit(mergeAt(["big"], value));
    }
    const sub = (await get(["big", "g42"])) as Record<string, number>;
    expect(Object.keys(sub)).toHaveLength(1000);
    const plan = await explainRead(store, target.name);
    expect(plan).toMatch(/Index (Only )?Scan/);
    expect(plan).not.toMatch(/Seq Scan on nodes/);
  });
});

/** EXPLAIN of the subtree read the store issues, through a raw connection to the same schema. */
async function explainRead(store: Store, name: string): Promise<string> {
  const raw = store as unknown as { explain?: (path: string[]) => Promise<string> };
  if (!raw.explain) throw new Error(`store ${name} does not expose explain()`);
  return raw.explain(["big", "g42"]);
}
