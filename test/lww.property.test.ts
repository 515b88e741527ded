/**
 * Conflict resolution (core/lww.ts) against its definition: whatever order writes arrive in, the
 * tree equals the writes applied one after the other in stamp order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatStamp } from "../core/hlc.ts";
import {
  type Resolution,
  type Tomb,
  filterEntries,
  finalize,
  finalizeQuery,
  keyPath,
  ops,
  pathKey,
  putTomb,
  resolveWrite,
  stampQuery,
  winningResolution,
} from "../core/lww.ts";
import { applyMutation, deleteAt, emptyTree, leaves, mergeAt, mutationFromInput } from "../core/tree.ts";
import type { Mutation, Tree } from "../core/types.ts";

/** A store as the SQL store keeps it: the tree, a stamp per leaf, tombstones, the clock. */
interface SimStore {
  tree: Tree;
  stamps: Map<string, string>;
  tombs: Map<string, Tomb>;
  clock: string | undefined;
}

function simStore(): SimStore {
  return { tree: emptyTree(), stamps: new Map(), tombs: new Map(), clock: undefined };
}

/** What the gateway and the store do on commit: resolve, apply, stamp merged leaves, tombstones. */
function simCommit(store: SimStore, m: Mutation, ts: string, fast: boolean): Resolution {
  const entries = { leaves: store.stamps, tombstones: store.tombs };
  const res =
    fast && (store.clock === undefined || ts > store.clock)
      ? winningResolution(m)
      : resolveWrite(m, ts, filterEntries(entries, stampQuery(m)));
  const committed = res.mutation;
  const tombs = finalize(committed, ts, res, filterEntries(entries, finalizeQuery(committed)));
  store.tree = applyMutation(store.tree, committed);
  const merged = new Set(ops(committed).sets.map(([l]) => pathKey(l)));
  const stamps = new Map<string, string>();
  for (const [p] of leaves(store.tree)) {
    const k = pathKey(p);
    stamps.set(k, merged.has(k) ? ts : (store.stamps.get(k) ?? ""));
  }
  store.stamps = stamps;
  for (const [k, t] of tombs) putTomb(store.tombs, k, t.cover, t.shadow);
  if (store.clock === undefined || ts > store.clock) store.clock = ts;
  return res;
}

const key = fc.constantFrom("a", "b", "c");
const path = fc.array(key, { minLength: 1, maxLength: 3 });
const leaf = fc.integer({ min: 0, max: 99 });
const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 2, arbitrary: leaf },
  { weight: 1, arbitrary: fc.dictionary(key, fc.oneof(leaf, fc.dictionary(key, leaf, { maxKeys: 2 })), { maxKeys: 3 }) },
);

const writeArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(path, value).map(([p, v]) => mergeAt(p, v)) },
  { weight: 2, arbitrary: path.map((p) => deleteAt(p)) },
  {
    weight: 1,
    arbitrary: fc.tuple(path, path, value).map(([d, p, v]) => {
      const del = deleteAt(d).delete;
      const merge = mergeAt(p, v).merge;
      return mutationFromInput({ merge, delete: del });
    }),
  },
);

/** The definition: every write applied in stamp order. */
function inStampOrder(writes: { m: Mutation; ts: string }[]): Tree {
  let tree = emptyTree();
  for (const w of [...writes].sort((a, b) => (a.ts < b.ts ? -1 : 1))) tree = applyMutation(tree, w.m);
  return tree;
}

const schedule = fc
  .array(writeArb, { minLength: 1, maxLength: 9 })
  .chain((ms) =>
    fc.record({
      ms: fc.constant(ms),
      // Stamps: a random order of the writes, some sharing a wall millisecond, from 3 nodes.
      order: fc.shuffledSubarray(
        ms.map((_, i) => i),
        { minLength: ms.length, maxLength: ms.length },
      ),
      arrival: fc.shuffledSubarray(
        ms.map((_, i) => i),
        { minLength: ms.length, maxLength: ms.length },
      ),
      nodes: fc.array(fc.constantFrom("n1", "n2", "n3"), { minLength: ms.length, maxLength: ms.length }),
      fast: fc.boolean(),
    }),
  );

describe("last-writer-wins resolution", () => {
  it("converges to the writes applied in stamp order, whatever the arrival order", () => {
    fc.assert(
      fc.property(schedule, ({ ms, order, arrival, nodes, fast }) => {
        const writes = ms.map((m, i) => {
          const rank = order.indexOf(i);
          return { m, ts: formatStamp(1000 + Math.floor(rank / 2), rank % 2, nodes[i] as string) };
        });
        const expected = inStampOrder(writes);
        const store = simStore();
        const arrived: { m: Mutation; ts: string }[] = [];
        for (const i of arrival) {
          const w = writes[i] as { m: Mutation; ts: string };
          const res = simCommit(store, w.m, w.ts, fast);
          // Each lost part names its winner: a write that arrived before, stamped later, with an
          // op at, under or above the part's path. A set is lost exactly when it is not committed.
          for (const part of res.lost) {
            expect(part.winnerTs > w.ts).toBe(true);
            const winner = arrived.find((x) => x.ts === part.winnerTs);
            expect(winner).toBeDefined();
            expect(touches(winner?.m as Mutation, part.path)).toBe(true);
          }
          const lostKeys = new Set(res.lost.map((part) => pathKey(part.path)));
          for (const [l] of ops(w.m).sets) {
            expect(lostKeys.has(pathKey(l))).toBe(leafOf(res.mutation.merge, l) === undefined);
          }
          arrived.push(w);
        }
        expect(store.tree).toEqual(expected);
        // Per leaf: the stamp kept is the one of the write that set it.
        for (const [p, v] of leaves(store.tree)) {
          const ts = store.stamps.get(pathKey(p));
          const w = writes.find((x) => x.ts === ts);
          expect(w).toBeDefined();
          expect(v).toEqual(leafOf(w?.m.merge, p));
        }
      }),
      { numRuns: 600 },
    );
  });

  it("is what the store commits: a replay of a write changes nothing", () => {
    fc.assert(
      fc.property(schedule, ({ ms, order, arrival, nodes }) => {
        const writes = ms.map((m, i) => ({ m, ts: formatStamp(5000 + order.indexOf(i), 0, nodes[i] as string) }));
        const store = simStore();
        for (const i of arrival) simCommit(store, writes[i]!.m, writes[i]!.ts, false);
        const tree = store.tree;
        for (const i of arrival) {
          const res = simCommit(store, writes[i]!.m, writes[i]!.ts, false);
          expect(applyMutation(tree, res.mutation)).toEqual(tree);
        }
        expect(store.tree).toEqual(tree);
      }),
      { numRuns: 200 },
    );
  });

  it("keeps the write whole when it is the newest, deletes included", () => {
    const m = mutationFromInput({ delete: { a: true }, merge: { a: { x: 1 } } });
    const res = resolveWrite(m, formatStamp(10, 0, "n"), {
      leaves: new Map([[pathKey(["a", "y"]), formatStamp(5, 0, "m")]]),
      tombstones: new Map(),
      maxUnder: new Map(),
    });
    expect(res.mutation).toEqual(m);
    expect([...res.tombstones.keys()].map(keyPath)).toEqual([["a"]]);
  });

  it("deletes only the older leaves under a delete that a newer leaf survives", () => {
    const res = resolveWrite(deleteAt(["a"]), formatStamp(10, 0, "n"), {
      leaves: new Map([
        [pathKey(["a", "old"]), formatStamp(5, 0, "m")],
        [pathKey(["a", "new"]), formatStamp(15, 0, "m")],
      ]),
      tombstones: new Map(),
      maxUnder: new Map(),
    });
    expect(JSON.parse(JSON.stringify(res.mutation))).toEqual({ merge: {}, delete: { a: { old: true } } });
  });
});

/** Whether an op of `m` is at, under or above `path`. */
function touches(m: Mutation, path: readonly string[]): boolean {
  const { deletes, sets } = ops(m);
  const related = (p: readonly string[]) => p.every((k, i) => i >= path.length || path[i] === k);
  return [...deletes, ...sets.map(([l]) => l)].some(related);
}

function leafOf(tree: Tree | undefined, p: readonly string[]): unknown {
  let node: unknown = tree;
  for (const k of p) {
    if (typeof node !== "object" || node === null || Array.isArray(node)) return node;
    node = (node as Record<string, unknown>)[k];
  }
  return node;
}
