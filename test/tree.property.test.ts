/**
 * Laws of the tree algebra (core/tree.ts), checked with fast-check on arbitrary normalized trees
 * and mutations. Keys come from a small alphabet with tricky members so that paths collide often.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applyMutation,
  combine,
  diff,
  emptyMutation,
  emptyTree,
  getNode,
  isTree,
  mutationFromInput,
  restrict,
  snapshotMutation,
} from "../core/tree.ts";
import type { DeleteTree, Mutation, Node, Path, Tree } from "../core/types.ts";

/** Raise with TREE_RUNS=20000 to hunt harder. */
const RUNS = Number(process.env.TREE_RUNS ?? 500);
const KEYS = ["a", "b", "__proto__", "constructor", "😀", "\uffff", "x/y"];
const key = fc.constantFrom(...KEYS);

const leaf: fc.Arbitrary<Node> = fc.oneof(
  fc.constantFrom("", "s", "😀", "__proto__"),
  fc.integer({ min: -3, max: 3 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.array(fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 2 }), fc.constant("s")), {
    maxLength: 3,
  }),
);

/** Builds a null-prototype object from entries, as core/ does. */
function fromEntries<T>(entries: [string, T][]): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  for (const [k, v] of entries) out[k] = v;
  return out;
}

const entries = <T>(value: fc.Arbitrary<T>, minLength: number) =>
  fc
    .uniqueArray(fc.tuple(key, value), { minLength, maxLength: 3, selector: ([k]) => k })
    .map((es) => fromEntries(es));

/** A normalized tree node: an object (never empty) up to `depth` levels deep, or a leaf. */
function node(depth: number): fc.Arbitrary<Node> {
  if (depth === 0) return leaf;
  return fc.oneof({ weight: 1, arbitrary: leaf }, { weight: 2, arbitrary: object(depth) });
}
function object(depth: number): fc.Arbitrary<Tree> {
  return entries(node(depth - 1), 1) as fc.Arbitrary<Tree>;
}
function deleteNode(depth: number): fc.Arbitrary<true | DeleteTree> {
  if (depth === 0) return fc.constant(true as const);
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(true as const) },
    { weight: 1, arbitrary: entries(deleteNode(depth - 1), 1) as fc.Arbitrary<DeleteTree> },
  );
}

/** Root trees (may be empty), depth of leaves <= 4. */
const tree: fc.Arbitrary<Tree> = entries(node(3), 0) as fc.Arbitrary<Tree>;
const mutation: fc.Arbitrary<Mutation> = fc.record({
  merge: entries(node(3), 0) as fc.Arbitrary<Tree>,
  delete: fc.oneof(
    fc.constant(Object.create(null) as DeleteTree),
    entries(deleteNode(3), 0) as fc.Arbitrary<DeleteTree>,
  ),
});
const path: fc.Arbitrary<string[]> = fc.array(key, { minLength: 0, maxLength: 5 });

/** Canonical JSON (sorted keys, -0 as 0): equal text means equal trees. */
function canon(x: unknown): string {
  return JSON.stringify(x, (_k, v) =>
    isTree(v)
      ? fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, (v as Tree)[k]]),
        )
      : v,
  );
}
const same = (a: unknown, b: unknown) => expect(canon(a)).toBe(canon(b));

function deepFreeze<T>(x: T): T {
  if (typeof x === "object" && x !== null && !Object.isFrozen(x)) {
    for (const k of Object.keys(x)) deepFreeze((x as Record<string, unknown>)[k]);
    Object.freeze(x);
  }
  return x;
}

/** Paths of every object below the root holding no key (there must be none). */
function emptyObjects(n: unknown, at: Path = []): Path[] {
  if (!isTree(n)) return [];
  const keys = Object.keys(n);
  const here = keys.length === 0 && at.length > 0 ? [at] : [];
  return here.concat(...keys.map((k) => emptyObjects(n[k], [...at, k])));
}

/** Every path of every object and leaf in a tree (prefixes included). */
function paths(n: unknown, at: string[] = []): string[][] {
  if (!isTree(n)) return [at];
  return [at, ...Object.keys(n).flatMap((k) => paths(n[k], [...at, k]))];
}

/**
 * The one case where no single mutation equals `a` then `b` (docs/tree.md, "combine"): `a` merges
 * an object at p, `b` deletes, key by key, all of it (not p itself), and `a` does not delete p with
 * `true`. Applied in turn, p vanishes if the target held a leaf at p; as one mutation it cannot.
 */
function combineInexact(
  merge: Tree,
  bDel: DeleteTree,
  aDel: DeleteTree | true | undefined,
): boolean {
  for (const k of Object.keys(merge)) {
    const v = merge[k];
    const mark = Object.hasOwn(bDel, k) ? bDel[k] : undefined;
    if (!isTree(v) || mark === undefined || mark === true) continue;
    const am =
      aDel === true ? true : aDel !== undefined && Object.hasOwn(aDel, k) ? aDel[k] : undefined;
    if (am !== true && emptiedBy(v, mark)) return true;
    if (combineInexact(v, mark, am)) return true;
  }
  return false;
}
function emptiedBy(v: Tree, mark: DeleteTree): boolean {
  return Object.keys(v).every((k) => {
    const m = Object.hasOwn(mark, k) ? mark[k] : undefined;
    const c = v[k];
    return m === true || (m !== undefined && isTree(c) && emptiedBy(c, m));
  });
}

const params = { numRuns: RUNS };

describe("tree algebra laws", () => {
  it("generated trees and mutations are normalized (normalizing them changes nothing)", () => {
    fc.assert(
      fc.property(tree, mutation, (t, m) => {
        same(mutationFromInput({ merge: JSON.parse(JSON.stringify(t)) }).merge, t);
        const again = mutationFromInput(JSON.parse(JSON.stringify(m)));
        same(again, m);
      }),
      params,
    );
  });

  it("apply is pure and never leaves an empty object below the root", () => {
    fc.assert(
      fc.property(tree, mutation, (t, m) => {
        const before = canon([t, m]);
        deepFreeze(t);
        deepFreeze(m);
        const out = applyMutation(t, m);
        expect(emptyObjects(out)).toEqual([]);
        expect(canon([t, m])).toBe(before);
      }),
      params,
    );
  });

  it("deletes apply before merges: the result holds every leaf of merge", () => {
    fc.assert(
      fc.property(tree, mutation, (t, m) => {
        const out = applyMutation(t, m);
        for (const p of paths(m.merge)) {
          const v = getNode(m.merge, p);
          if (!isTree(v)) same(getNode(out, p), v);
        }
      }),
      params,
    );
  });

  it("apply(apply(t, a), b) equals apply(t, combine(a, b)), except in the documented case", () => {
    let exact = 0;
    fc.assert(
      fc.property(tree, mutation, mutation, (t, a, b) => {
        deepFreeze([t, a, b]);
        const c = combine(a, b);
        expect(emptyObjects(c.merge)).toEqual([]);
        expect(emptyObjects(c.delete)).toEqual([]);
        if (combineInexact(a.merge, b.delete, a.delete)) return;
        exact++;
        same(applyMutation(t, c), applyMutation(applyMutation(t, a), b));
      }),
      params,
    );
    expect(exact).toBeGreaterThan(RUNS / 2);
  });

  it("combine is associative in effect", () => {
    fc.assert(
      fc.property(tree, mutation, mutation, mutation, (t, a, b, c) => {
        if (combineInexact(a.merge, b.delete, a.delete)) return;
        if (combineInexact(b.merge, c.delete, b.delete)) return;
        const ab = combine(a, b);
        const bc = combine(b, c);
        if (combineInexact(ab.merge, c.delete, ab.delete)) return;
        if (combineInexact(a.merge, bc.delete, a.delete)) return;
        same(applyMutation(t, combine(ab, c)), applyMutation(t, combine(a, bc)));
      }),
      params,
    );
  });

  it("apply(a, diff(a, b)) equals b", () => {
    fc.assert(
      fc.property(tree, tree, (a, b) => {
        deepFreeze([a, b]);
        const d = diff(a, b);
        expect(emptyObjects(d.merge)).toEqual([]);
        expect(emptyObjects(d.delete)).toEqual([]);
        same(applyMutation(a, d), b);
      }),
      params,
    );
  });

  it("restricting then applying equals applying then reading the subtree", () => {
    const watched = fc
      .tuple(tree, mutation, path, fc.nat(), fc.constantFrom(0, 1, 2))
      .map(([t, m, random, pick, source]) => {
        // A third of the paths are random; the rest are paths found in t or in m.
        const found = [paths(t), paths(m.merge), paths(m.delete)][source] as string[][];
        const p = pick % 3 === 0 ? random : (found[pick % found.length] as string[]);
        return [t, m, p] as const;
      });
    let unaffected = 0;
    let affected = 0;
    fc.assert(
      fc.property(watched, ([t, m, p]) => {
        deepFreeze([t, m]);
        const r = restrict(m, p);
        const whole = getNode(applyMutation(t, m), p);
        same(getNode(applyMutation(t, r ?? emptyMutation()), p), whole);
        if (r === null) {
          unaffected++;
          same(getNode(t, p), whole);
        } else {
          affected++;
          expect(emptyObjects(r.merge)).toEqual([]);
          expect(emptyObjects(r.delete)).toEqual([]);
          // Rooted at []: nothing outside the watched path.
          for (const q of [...paths(r.merge), ...paths(r.delete)].filter((q) => q.length > 0)) {
            const n = Math.min(q.length, p.length);
            expect(q.slice(0, n)).toEqual(p.slice(0, n));
          }
        }
      }),
      params,
    );
    expect(unaffected).toBeGreaterThan(RUNS / 20);
    expect(affected).toBeGreaterThan(RUNS / 4);
  });

  it("a replica fed a snapshot then restricted changes keeps the watched subtree in step", () => {
    fc.assert(
      fc.property(
        tree,
        tree,
        fc.array(mutation, { maxLength: 4 }),
        path,
        (server0, stale, changes, p) => {
          let server = server0;
          // A snapshot is a plain mutation below the root; at [] the client clears its copy itself.
          const cleared = p.length === 0 ? emptyTree() : stale;
          let replica = applyMutation(cleared, snapshotMutation(p, getNode(server, p)));
          same(getNode(replica, p), getNode(server, p));
          for (const m of changes) {
            server = applyMutation(server, m);
            const r = restrict(m, p);
            if (r !== null) replica = applyMutation(replica, r);
            same(getNode(replica, p), getNode(server, p));
          }
        },
      ),
      params,
    );
  });

  it("diff then restrict: a watcher of any path converges on the new tree", () => {
    fc.assert(
      fc.property(tree, tree, path, (a, b, p) => {
        const r = restrict(diff(a, b), p);
        same(getNode(applyMutation(a, r ?? emptyMutation()), p), getNode(b, p));
      }),
      params,
    );
  });

  it("combine of an empty mutation is the identity in effect", () => {
    fc.assert(
      fc.property(tree, mutation, (t, m) => {
        const e = { merge: emptyTree(), delete: Object.create(null) as DeleteTree };
        same(applyMutation(t, combine(m, e)), applyMutation(t, m));
        same(applyMutation(t, combine(e, m)), applyMutation(t, m));
      }),
      params,
    );
  });
});
