/**
 * Unit tests of the path encoding and of `treeFromPacked`, which builds a read's value from the
 * rows PostgreSQL packs into two texts (core/store/encoding.ts, docs/storage.md "Reads").
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ROW_SEP, encodePath, treeFromPacked, upperBound } from "../core/store/encoding.ts";
import { leaves, mutationFromInput } from "../core/tree.ts";
import type { Path } from "../core/types.ts";

/** Packs `[path below the read path, leaf]` rows as READ_SQL does, for a read at `at`. */
function pack(rows: [Path, unknown][], at: Path = ["r", "é"]): [string, string, number] {
  const paths = rows.map(([p]) => encodePath([...at, ...p])).join(ROW_SEP);
  const values = rows.map(([, v]) => JSON.stringify(v)).join(",");
  return [paths, values, encodePath(at).length];
}
const json = (x: unknown): unknown => JSON.parse(JSON.stringify(x));
const HOSTILE = ["__proto__", "constructor", "prototype", "toString", "_", "%", "/", ".", ":", " ", "a b", "🎉", "日本", "é", "0", "10", "2", ",", '"', "{", "}", "[", "\\"];

describe("treeFromPacked", () => {
  it("builds nested objects with null prototypes from rows in any order", () => {
    const rows: [Path, unknown][] = [
      [["b", "y"], 2],
      [["a"], "x"],
      [["b", "x", "deep"], [1, { n: null }]],
      [["c"], true],
    ];
    const out = treeFromPacked(...pack(rows, [])) as Record<string, Record<string, unknown>>;
    expect(json(out)).toEqual({ a: "x", b: { y: 2, x: { deep: [1, { n: null }] } }, c: true });
    expect(Object.getPrototypeOf(out)).toBeNull();
    expect(Object.getPrototypeOf(out.b)).toBeNull();
    // objects inside array leaves get null prototypes too
    const deep = (out.b as Record<string, Record<string, unknown[]>>).x?.deep as unknown[];
    expect(Object.getPrototypeOf(deep[1])).toBeNull();
  });

  it("returns the leaf stored at the path itself, and undefined for no rows", () => {
    const at = encodePath(["a", "__proto__"]);
    expect(treeFromPacked(at, "42", at.length)).toBe(42);
    expect(treeFromPacked(at, '"a\\u0001b"', at.length)).toBe("a\u0001b");
    expect(treeFromPacked(at, "null", at.length)).toBeNull();
    expect(treeFromPacked(at, '[1, {"__proto__": 1}]', at.length)).toEqual([1, JSON.parse('{"__proto__": 1}')]);
    expect(Object.getPrototypeOf((treeFromPacked("\u0001", '[{"a": 1}]', 1) as unknown[])[0])).toBeNull();
    expect(treeFromPacked("", "", 1)).toBeUndefined();
  });

  it("keeps hostile keys as plain data, at every depth", () => {
    const rows: [Path, unknown][] = [];
    HOSTILE.forEach((k, i) => {
      rows.push([[k], i]);
      rows.push([["deep", k, k], { s: `${k},"\u0001\u0002` }]);
    });
    const out = treeFromPacked(...pack(rows)) as Record<string, unknown>;
    for (const [i, k] of HOSTILE.entries()) {
      expect(Object.hasOwn(out, k), k).toBe(true);
      expect(out[k]).toBe(i);
      const inner = (out.deep as Record<string, Record<string, { s: string }>>)[k]?.[k];
      expect(inner?.s).toBe(`${k},"\u0001\u0002`);
    }
    expect(Object.keys(out).sort()).toEqual([...HOSTILE, "deep"].sort());
    expect(({} as Record<string, unknown>).s).toBeUndefined();
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });

  it("rebuilds any tree from its leaves (property)", () => {
    const key = fc.constantFrom(...HOSTILE, "a", "b");
    // Objects are built with null prototypes, so `__proto__` is an ordinary key here too.
    const dict = <T>(value: fc.Arbitrary<T>, minLength: number) =>
      fc
        .uniqueArray(fc.tuple(key, value), { minLength, maxLength: 4, selector: ([k]) => k })
        .map((es) => Object.assign(Object.create(null), Object.fromEntries(es)) as Record<string, T>);
    const leaf = fc.oneof(
      fc.constantFrom("", "s", "😀", "__proto__", "a,b", "{}", "\u0001"),
      fc.integer(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.boolean(),
      fc.array(fc.oneof(fc.integer(), fc.constant(null), dict(fc.integer(), 0)), { maxLength: 3 }),
    );
    const tree = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: "small" }, leaf, tie("object")),
      object: dict(tie("node"), 1),
    })).object;
    fc.assert(
      fc.property(tree, fc.integer(), (input, seed) => {
        const normalized = mutationFromInput({ merge: input }).merge;
        const rows = [...leaves(normalized)] as [Path, unknown][];
        // rows in any order: rotate by the seed
        const k = rows.length === 0 ? 0 : Math.abs(seed) % rows.length;
        const shuffled = [...rows.slice(k), ...rows.slice(0, k)];
        const out = rows.length === 0 ? undefined : treeFromPacked(...pack(shuffled));
        expect(json(out ?? {})).toEqual(json(normalized));
      }),
      { numRuns: 300 },
    );
  });
});

describe("path encoding", () => {
  it("keeps each subtree one range that holds only its own paths", () => {
    const p = encodePath(["a", "b"]);
    expect(p).toBe("\u0001a\u0001b\u0001");
    expect(upperBound(p)).toBe("\u0001a\u0001b\u0002");
    for (const other of [["a", "b "], ["a", "ba"], ["a", "b", "c"], ["a"], ["a", "a"]] as Path[]) {
      const enc = encodePath(other);
      const inside = enc >= p && enc < upperBound(p);
      expect(inside, other.join("/")).toBe(other.length >= 2 && other[1] === "b");
    }
  });
});
