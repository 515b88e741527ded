/**
 * Unit tests of the tree algebra (core/tree.ts): one or more tests per rule of the contract's
 * sections "1. The tree", "2. Mutations" and "4. Watch semantics", as written down in docs/tree.md.
 */
import { describe, expect, it } from "vitest";
import { KoraError } from "../core/errors.ts";
import {
  MAX_ARRAY_NESTING,
  applyMutation,
  combine,
  compareKeys,
  deleteAt,
  diff,
  emptyTree,
  getNode,
  isEmptyMutation,
  mergeAt,
  mutationFromInput,
  restrict,
  select,
  snapshotMutation,
  sortedKeys,
  utf8Length,
  validateKey,
  validatePath,
} from "../core/tree.ts";
import { DEFAULT_LIMITS, type Limits, type Mutation, type Tree } from "../core/types.ts";

/** Plain JSON copy: compares null-prototype trees with literals, and keeps `__proto__` as data. */
const json = (x: unknown): unknown => JSON.parse(JSON.stringify(x));
const tree = (text: string): Tree => mutationFromInput({ merge: JSON.parse(text) }).merge;
const mutation = (input: { merge?: unknown; delete?: unknown }): Mutation =>
  mutationFromInput(input);
const apply = (t: Tree, input: { merge?: unknown; delete?: unknown }): unknown =>
  json(applyMutation(t, mutation(input)));

/** Runs `fn`, expects a KoraError BAD_USER_INPUT, and returns it for further checks. */
function badInput(fn: () => unknown): KoraError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(KoraError);
  expect((caught as KoraError).code).toBe("BAD_USER_INPUT");
  return caught as KoraError;
}

const ALLOWED_KEYS = [
  ":",
  "/",
  ".",
  "$",
  "#",
  "[",
  "]",
  "%",
  "_",
  "*",
  " ",
  " leading and trailing ",
  "user:info",
  "a/b.c$d#e[f]g%h_i*j",
  "😀",
  "ключ",
  "键",
  "__proto__",
  "constructor",
  "prototype",
  "hasOwnProperty",
  "toString",
  "\u0080",
  "\u00a0",
  "\u2028",
  "\ufeff",
  "\uffff",
  "0",
  "-1",
  "1e3",
];

describe("keys", () => {
  it("rejects the empty key, naming the path", () => {
    const err = badInput(() => mutation({ merge: { users: { "": 1 } } }));
    expect(err.message).toContain('["users"]');
    badInput(() => validatePath([""]));
    badInput(() => deleteAt(["a", ""]));
  });

  it("rejects every control character U+0000-U+001F and U+007F, anywhere in the key", () => {
    const controls = [...Array.from({ length: 0x20 }, (_, i) => i), 0x7f];
    for (const code of controls) {
      const c = String.fromCharCode(code);
      for (const key of [c, `a${c}`, `${c}b`, `a${c}b`]) {
        const err = badInput(() => mutation({ merge: { top: { [key]: 1 } } }));
        expect(err.message).toContain('["top"]');
        expect(err.message).toContain(`U+${code.toString(16).toUpperCase().padStart(4, "0")}`);
        badInput(() => mutation({ delete: { top: { [key]: true } } }));
        badInput(() => validatePath(["top", key]));
      }
    }
  });

  it("allows every other character, each meaning itself", () => {
    for (const key of ALLOWED_KEYS) {
      expect(validateKey(key, [])).toBe(key);
      const t = applyMutation(emptyTree(), mergeAt(["p", key, "v"], key));
      expect(getNode(t, ["p", key, "v"])).toBe(key);
      expect(Object.keys(getNode(t, ["p"]) as Tree)).toEqual([key]);
    }
    // DEL's neighbours are fine.
    expect(validateKey("~\u0080", [])).toBe("~\u0080");
  });

  it("counts the 768-byte limit in bytes of UTF-8", () => {
    expect(validateKey("a".repeat(768), [])).toHaveLength(768);
    badInput(() => validateKey("a".repeat(769), []));
    // 2-byte characters: 384 fit, 385 do not.
    expect(utf8Length("é")).toBe(2);
    validateKey("é".repeat(384), []);
    badInput(() => validateKey("é".repeat(385), []));
    // 3-byte characters: 256 fit, 257 do not (only 257 UTF-16 units).
    expect(utf8Length("键")).toBe(3);
    validateKey("键".repeat(256), []);
    badInput(() => validateKey("键".repeat(257), []));
    // Emoji are 4 bytes (2 UTF-16 units): 192 fit, 193 do not.
    expect(utf8Length("😀")).toBe(4);
    validateKey("😀".repeat(192), []);
    badInput(() => validateKey("😀".repeat(193), []));
    // Mixed, exactly at the limit, then one byte over.
    const mixed = "😀".repeat(100) + "键".repeat(100) + "é".repeat(34);
    expect(utf8Length(mixed)).toBe(768);
    validateKey(mixed, []);
    badInput(() => validateKey(mixed + "a", []));
    // Through a mutation, naming the path.
    const err = badInput(() => mutation({ merge: { big: { ["😀".repeat(193)]: 1 } } }));
    expect(err.message).toContain('["big"]');
    expect(err.message).toContain("772 bytes");
  });

  it("agrees with Buffer.byteLength on many strings", () => {
    const samples = [...ALLOWED_KEYS, "a😀b", "\u07ff\u0800", "\ud7ff\ue000", "𐀀􏿿"];
    for (const s of samples) expect(utf8Length(s)).toBe(Buffer.byteLength(s, "utf8"));
  });

  it("honours a configured key limit", () => {
    const limits: Limits = { ...DEFAULT_LIMITS, maxKeyBytes: 4 };
    validateKey("😀", [], limits);
    badInput(() => validateKey("😀a", [], limits));
    badInput(() => mutationFromInput({ merge: { abcde: 1 } }, limits));
    mutationFromInput({ merge: { abcd: 1 } }, limits);
  });

  it("rejects lone surrogates (decision: keys must be valid Unicode)", () => {
    for (const key of ["\ud800", "\udc00", "a\ud83d", "\ude00b", "\ud83d\ud83d", "\ude00\ud83d"]) {
      badInput(() => validateKey(key, ["p"]));
      badInput(() => mutation({ merge: { [key]: 1 } }));
    }
    expect(validateKey("\ud83d\ude00", [])).toBe("😀");
  });

  it("rejects a path that is not a list of strings", () => {
    badInput(() => validatePath("a"));
    badInput(() => validatePath([1]));
    badInput(() => validatePath(["a", null]));
    expect(validatePath([])).toEqual([]);
  });
});

describe("depth", () => {
  const path = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`);

  it("allows leaves whose full path has 32 keys and rejects 33, path keys included", () => {
    expect(json(mergeAt(path(32), 1).merge)).toBeTruthy();
    expect(json(mergeAt(path(31), { x: 1 }).merge)).toBeTruthy();
    expect(json(mergeAt(path(10), tree(JSON.stringify(nest(22)))).merge)).toBeTruthy();
    const err = badInput(() => mergeAt(path(31), { x: { y: 1 } }));
    expect(err.message).toContain("32");
    badInput(() => mergeAt(path(33), 1));
    badInput(() => mergeAt(path(10), nest(23)));
    badInput(() => mutation({ merge: nest(33) }));
    mutation({ merge: nest(32) });
  });

  it("applies to deletes and to paths", () => {
    expect(deleteAt(path(32))).toBeTruthy();
    badInput(() => deleteAt(path(33)));
    mutation({ delete: nest(32, true) });
    badInput(() => mutation({ delete: nest(33, true) }));
    badInput(() => validatePath(path(33)));
    expect(validatePath(path(32))).toHaveLength(32);
  });

  it("does not count keys inside arrays", () => {
    const deepArray = nest(40, [1]) as unknown;
    const m = mergeAt(path(31), [deepArray, [[[["x"]]]]]);
    expect(json(getNode(m.merge, path(31)))).toEqual(json([deepArray, [[[["x"]]]]]));
  });

  it("is configurable through Limits", () => {
    const limits: Limits = { ...DEFAULT_LIMITS, maxDepth: 3 };
    mergeAt(["a", "b", "c"], 1, limits);
    mergeAt(["a"], { b: { c: 1 } }, limits);
    badInput(() => mergeAt(["a", "b", "c", "d"], 1, limits));
    badInput(() => mergeAt(["a", "b"], { c: { d: 1 } }, limits));
    badInput(() => deleteAt(["a", "b", "c", "d"], limits));
    badInput(() => mutationFromInput({ delete: { a: { b: { c: { d: true } } } } }, limits));
    const wide: Limits = { ...DEFAULT_LIMITS, maxDepth: 40 };
    mergeAt(path(40), 1, wide);
  });

  it("fails fast on hostile nesting instead of exhausting the stack", () => {
    const text = '{"a":'.repeat(100_000) + "1" + "}".repeat(100_000);
    badInput(() => mutation({ merge: JSON.parse(text) }));
  });
});

/** `{k0: {k1: ... leaf}}` with `n` keys on the way to `leaf`. */
function nest(n: number, leaf: unknown = 1): Record<string, unknown> {
  let out: unknown = leaf;
  for (let i = n - 1; i >= 0; i--) out = { [`k${i}`]: out };
  return out as Record<string, unknown>;
}

describe("leaves, null and arrays", () => {
  it("rejects null outside arrays, naming the path", () => {
    const err = badInput(() => mutation({ merge: { a: { b: null } } }));
    expect(err.message).toContain('["a","b"]');
    expect(err.treePath).toEqual(["a", "b"]);
    badInput(() => mergeAt(["a"], null));
    badInput(() => mutation({ merge: { a: 1, b: { c: [null], d: null } } }));
  });

  it("allows null inside arrays, at any depth", () => {
    const m = mutation({ merge: { a: [null, 1, [null], { x: null }] } });
    expect(json(m.merge)).toEqual({ a: [null, 1, [null], { x: null }] });
  });

  it("stores arrays whole and replaces them whole", () => {
    const t = tree('{"a": [1, 2, 3], "b": {"c": 1}}');
    expect(apply(t, { merge: { a: [4] } })).toEqual({ a: [4], b: { c: 1 } });
    expect(apply(t, { merge: { a: [] } })).toEqual({ a: [], b: { c: 1 } });
    expect(apply(t, { merge: { b: [1] } })).toEqual({ a: [1, 2, 3], b: [1] });
    expect(apply(t, { merge: { a: { x: 1 } } })).toEqual({ a: { x: 1 }, b: { c: 1 } });
  });

  it("applies no key rules inside arrays", () => {
    const inside = [{ "": 1, "a\u0001b": 2, ["x".repeat(1000)]: 3 }, {}, { a: {} }];
    const m = mutation({ merge: { a: inside } });
    expect(json(getNode(m.merge, ["a"]))).toEqual(json(inside));
  });

  it("accepts strings, finite numbers and booleans", () => {
    const m = mutation({ merge: { s: "", n: -0.5, z: 0, t: true, f: false, big: 1e300 } });
    expect(json(m.merge)).toEqual({ s: "", n: -0.5, z: 0, t: true, f: false, big: 1e300 });
  });

  it("rejects non-finite numbers, also inside arrays (decision)", () => {
    for (const n of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      badInput(() => mutation({ merge: { a: n } }));
      badInput(() => mutation({ merge: { a: [1, [n]] } }));
    }
  });

  it("rejects U+0000 and lone surrogates in strings, also inside arrays (decision)", () => {
    badInput(() => mutation({ merge: { a: "x\u0000y" } }));
    badInput(() => mutation({ merge: { a: ["x\u0000"] } }));
    badInput(() => mutation({ merge: { a: [{ "k\u0000": 1 }] } }));
    badInput(() => mutation({ merge: { a: "\ud800" } }));
    badInput(() => mutation({ merge: { a: [["\udc00"]] } }));
    // Other control characters are fine in values.
    expect(json(mutation({ merge: { a: "\u0001\n\t\u007f" } }).merge)).toEqual({
      a: "\u0001\n\t\u007f",
    });
  });

  it("limits array nesting to MAX_ARRAY_NESTING (decision)", () => {
    const nested = (n: number): unknown => {
      let out: unknown = 1;
      for (let i = 0; i < n; i++) out = [out];
      return out;
    };
    mutation({ merge: { a: nested(MAX_ARRAY_NESTING) } });
    badInput(() => mutation({ merge: { a: nested(MAX_ARRAY_NESTING + 1) } }));
    badInput(() => mutation({ merge: { a: nested(100_000) } }));
  });

  it("rejects values that are not JSON", () => {
    badInput(() => mutation({ merge: { a: () => 1 } }));
    badInput(() => mutation({ merge: { a: 1n } }));
    badInput(() => mutation({ merge: { a: undefined } }));
  });

  it("rejects a mutation with unknown fields or of the wrong shape, naming the field", () => {
    expect(() => mutationFromInput({ merge: { a: 1 }, delet: { b: true } } as never)).toThrow(/unknown field "delet"/);
    badInput(() => mutationFromInput([] as never));
    badInput(() => mutationFromInput(null as never));
    badInput(() => mutationFromInput(JSON.parse('{"__proto__": {"merge": {"a": 1}}}')));
  });

  it("rejects objects that are not plain (a Date would otherwise merge nothing), by name", () => {
    expect(() => mergeAt(["a"], new Date(0))).toThrow(/is a Date, not a JSON object/);
    badInput(() => mutation({ merge: { a: new Map([["k", 1]]) } }));
    badInput(() => mutation({ merge: { a: [1, new Uint8Array(2)] } }));
    badInput(() => mutation({ merge: new (class Point {})() }));
    // Plain and null-prototype objects are JSON objects.
    expect(mergeAt(["a"], Object.assign(Object.create(null), { b: 1 })).merge).toEqual({ a: { b: 1 } });
  });
});

describe("the root", () => {
  it("rejects a leaf merged at []", () => {
    for (const leaf of [1, "x", true, [], [1]]) badInput(() => mergeAt([], leaf));
    badInput(() => mutation({ merge: [1] }));
    badInput(() => mutation({ merge: "x" }));
  });

  it("rejects a delete of []", () => {
    badInput(() => deleteAt([]));
    badInput(() => mutation({ delete: true }));
    badInput(() => mutation({ delete: 1 }));
  });

  it("stays an object when everything is deleted", () => {
    const t = tree('{"a": 1, "b": {"c": 1}}');
    const after = applyMutation(t, mutation({ delete: { a: true, b: true } }));
    expect(json(after)).toEqual({});
  });
});

describe("empty objects", () => {
  it("merging {} writes nothing", () => {
    expect(isEmptyMutation(mergeAt([], {}))).toBe(true);
    expect(isEmptyMutation(mergeAt(["a", "b"], {}))).toBe(true);
    expect(isEmptyMutation(mutation({ merge: { a: {}, b: { c: {} } } }))).toBe(true);
    expect(isEmptyMutation(mutation({}))).toBe(true);
    expect(isEmptyMutation(mutation({ merge: null, delete: null }))).toBe(true);
    expect(isEmptyMutation(mutation({ delete: { a: {} } }))).toBe(true);
    const m = mutation({ merge: { a: {}, b: { c: {}, d: 1 } } });
    expect(json(m.merge)).toEqual({ b: { d: 1 } });
    const t = tree('{"a": {"x": 1}}');
    expect(apply(t, { merge: { a: {} } })).toEqual({ a: { x: 1 } });
    expect(apply(t, { merge: { b: {} } })).toEqual({ a: { x: 1 } });
  });

  it("merging {} onto a leaf leaves the leaf", () => {
    const t = tree('{"a": 1}');
    expect(apply(t, { merge: { a: {} } })).toEqual({ a: 1 });
  });

  it("deleting the last child removes the object, up to the root", () => {
    const t = tree('{"a": {"b": {"c": {"d": 1}}}, "x": {"y": 1, "z": 2}}');
    expect(apply(t, { delete: { a: { b: { c: { d: true } } } } })).toEqual({ x: { y: 1, z: 2 } });
    expect(apply(t, { delete: { x: { y: true } } })).toEqual({
      a: { b: { c: { d: 1 } } },
      x: { z: 2 },
    });
    expect(apply(t, { delete: { x: { y: true, z: true } } })).toEqual({
      a: { b: { c: { d: 1 } } },
    });
    expect(apply(t, { delete: { x: { y: true, z: true }, a: { b: { c: { d: true } } } } })).toEqual(
      {},
    );
  });
});

describe("mutations", () => {
  it("applies deletes before merges", () => {
    const t = tree('{"a": {"y": 1, "z": {"w": 2}}, "b": 1}');
    expect(apply(t, { delete: { a: true }, merge: { a: { x: 1 } } })).toEqual({
      a: { x: 1 },
      b: 1,
    });
    expect(apply(t, { delete: { a: { y: true } }, merge: { a: { y: 5 } } })).toEqual({
      a: { y: 5, z: { w: 2 } },
      b: 1,
    });
    expect(apply(t, { delete: { b: true }, merge: { b: 2 } })).toEqual({
      a: { y: 1, z: { w: 2 } },
      b: 2,
    });
  });

  it("merges objects onto objects key by key", () => {
    const t = tree('{"a": {"x": 1, "y": {"z": 1}}}');
    expect(apply(t, { merge: { a: { y: { w: 2 }, v: 3 } } })).toEqual({
      a: { x: 1, y: { z: 1, w: 2 }, v: 3 },
    });
  });

  it("a leaf replaces a whole subtree", () => {
    const t = tree('{"a": {"x": 1, "y": {"z": 1}}}');
    expect(apply(t, { merge: { a: 5 } })).toEqual({ a: 5 });
    expect(apply(t, { merge: { a: { y: "s" } } })).toEqual({ a: { x: 1, y: "s" } });
    expect(apply(t, { merge: { a: [{ x: 2 }] } })).toEqual({ a: [{ x: 2 }] });
  });

  it("an object replaces a leaf", () => {
    const t = tree('{"a": 5, "b": [1]}');
    expect(apply(t, { merge: { a: { x: 1 }, b: { y: 1 } } })).toEqual({ a: { x: 1 }, b: { y: 1 } });
  });

  it("writing equal values or deleting absent paths is still a mutation", () => {
    expect(isEmptyMutation(mutation({ delete: { nope: true } }))).toBe(false);
    const t = tree('{"a": 1}');
    expect(apply(t, { delete: { nope: true, a: { under: { leaf: true } } } })).toEqual({ a: 1 });
  });

  it("delete leaves must be true or 1", () => {
    const m = mutation({ delete: { a: 1, b: { c: true } } });
    expect(json(m.delete)).toEqual({ a: true, b: { c: true } });
    for (const bad of [false, 0, 2, "true", null, [], [true], -1]) {
      const err = badInput(() => mutation({ delete: { a: { b: bad } } }));
      expect(err.message).toContain('["a","b"]');
    }
    // Messages stay short and never throw on values JSON cannot print.
    expect(badInput(() => mutation({ delete: { a: 2n } })).message).toContain("bigint");
    const long = badInput(() => mutation({ delete: { a: "x".repeat(100_000) } })).message;
    expect(long.length).toBeLessThan(300);
    badInput(() => mutation({ delete: [] }));
    badInput(() => mutation({ delete: "a" }));
  });

  it("mergeAt and deleteAt build the mutation rooted at []", () => {
    expect(json(mergeAt(["a", "b"], { c: 1 }))).toEqual({
      merge: { a: { b: { c: 1 } } },
      delete: {},
    });
    expect(json(mergeAt([], { c: 1 }))).toEqual({ merge: { c: 1 }, delete: {} });
    expect(json(deleteAt(["a", "b"]))).toEqual({ merge: {}, delete: { a: { b: true } } });
  });

  it("is pure: inputs are not modified", () => {
    const t = deepFreeze(tree('{"a": {"x": 1}, "b": 2}'));
    const m = deepFreeze(mutation({ delete: { a: { x: true } }, merge: { b: { c: 1 }, d: 1 } }));
    expect(json(applyMutation(t, m))).toEqual({ b: { c: 1 }, d: 1 });
    expect(json(t)).toEqual({ a: { x: 1 }, b: 2 });
  });
});

function deepFreeze<T>(x: T): T {
  if (typeof x === "object" && x !== null) {
    for (const v of Object.values(x)) deepFreeze(v);
    Object.freeze(x);
  }
  return x;
}

describe("__proto__ and constructor are plain data", () => {
  it("never reach Object.prototype", () => {
    const input = JSON.parse(
      '{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 2}}}',
    );
    const m = mutation({ merge: input });
    const t = applyMutation(emptyTree(), m);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(getNode(t, ["__proto__", "polluted"])).toBe(1);
    expect(getNode(t, ["constructor", "prototype", "polluted"])).toBe(2);
    expect(Object.keys(t).sort()).toEqual(["__proto__", "constructor"]);
    // Merging onto, deleting, restricting, combining, diffing with them.
    const t2 = applyMutation(t, mutation({ merge: JSON.parse('{"__proto__": {"more": 1}}') }));
    expect(getNode(t2, ["__proto__", "more"])).toBe(1);
    expect(getNode(t2, ["__proto__", "polluted"])).toBe(1);
    const t3 = applyMutation(
      t2,
      mutation({ delete: JSON.parse('{"__proto__": {"polluted": true}}') }),
    );
    expect(getNode(t3, ["__proto__", "polluted"])).toBeUndefined();
    expect(getNode(t3, ["__proto__", "more"])).toBe(1);
    expect(json(restrict(m, ["__proto__"])?.merge)).toEqual(
      JSON.parse('{"__proto__": {"polluted": 1}}'),
    );
    expect(json(applyMutation(emptyTree(), diff(emptyTree(), t)))).toEqual(json(t));
    expect(json(combine(m, mergeAt(["__proto__", "x"], 1)).merge)).toEqual(
      JSON.parse(
        '{"__proto__": {"polluted": 1, "x": 1}, "constructor": {"prototype": {"polluted": 2}}}',
      ),
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).more).toBeUndefined();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("are absent when not stored, even though every object has them by inheritance", () => {
    const t = tree('{"a": 1}');
    expect(getNode(t, ["constructor"])).toBeUndefined();
    expect(getNode(t, ["__proto__"])).toBeUndefined();
    expect(getNode(t, ["toString"])).toBeUndefined();
    expect(getNode({ a: 1 } as Tree, ["constructor"])).toBeUndefined();
    expect(restrict(mergeAt(["a"], 1), ["constructor"])).toBeNull();
    expect(apply(t, { delete: { constructor: true, __proto__x: true } })).toEqual({ a: 1 });
  });
});

describe("byte order of keys", () => {
  const bytes = (a: string, b: string) => Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const samples = [
    "",
    "a",
    "b",
    "A",
    "Z",
    "aa",
    "ab",
    "a b",
    "10",
    "2",
    "9",
    "-1",
    "~",
    "\u0080",
    "é",
    "\u07ff",
    "\u0800",
    "键",
    "\ud7ff",
    "\ue000",
    "\uf8ff",
    "\ufb01",
    "\ufeff",
    "\ufffd",
    "\uffff",
    "😀",
    "😁",
    "𐀀",
    "\u{10ffff}",
    "a😀",
    "a\uffff",
    "a\ue000b",
    "a😀b",
    "😀\uffff",
    "\uffff😀",
    "__proto__",
    "constructor",
  ];

  it("compareKeys agrees with Buffer.compare of the UTF-8 bytes on every pair", () => {
    for (const a of samples) {
      for (const b of samples) {
        expect([a, b, Math.sign(compareKeys(a, b))]).toEqual([a, b, bytes(a, b)]);
      }
    }
  });

  it("puts surrogate pairs (U+10000 and up) after U+E000-U+FFFF, unlike UTF-16 order", () => {
    expect(compareKeys("😀", "\uffff")).toBeGreaterThan(0);
    expect("😀" < "\uffff").toBe(true); // JavaScript's own order disagrees
    expect(compareKeys("\ue000", "\u{10000}")).toBeLessThan(0);
    expect(compareKeys("\ud7ff", "\u{10000}")).toBeLessThan(0);
  });

  it("sortedKeys sorts by bytes, not integer-like keys first", () => {
    const t = tree('{"b": 1, "10": 1, "2": 1, "😀": 1, "\\uffff": 1, "a": 1, "B": 1}');
    expect(sortedKeys(t)).toEqual(["10", "2", "B", "a", "b", "\uffff", "😀"]);
    const sorted = [...samples].sort(compareKeys);
    const byBuffer = [...samples].sort(bytes);
    expect(sorted).toEqual(byBuffer);
  });
});

describe("select", () => {
  const t = tree('{"a": 1, "b": 2, "c": 3, "d": 4, "😀": 5, "\\uffff": 6}');
  const keys = (n: unknown) => (n === undefined ? undefined : sortedKeys(n as Tree));

  it("returns the node when nothing selects", () => {
    expect(select(t)).toBe(t);
    expect(select(t, { reverse: true })).toBe(t);
  });

  it("min is inclusive, max exclusive", () => {
    expect(keys(select(t, { min: "b" }))).toEqual(["b", "c", "d", "\uffff", "😀"]);
    expect(keys(select(t, { max: "c" }))).toEqual(["a", "b"]);
    expect(keys(select(t, { min: "b", max: "d" }))).toEqual(["b", "c"]);
    expect(keys(select(t, { min: "bb", max: "cc" }))).toEqual(["c"]);
    expect(keys(select(t, { min: "\uffff" }))).toEqual(["\uffff", "😀"]);
    expect(keys(select(t, { max: "😀" }))).toEqual(["a", "b", "c", "d", "\uffff"]);
  });

  it("limit counts children in byte order, reverse takes them from the end", () => {
    expect(keys(select(t, { limit: 2 }))).toEqual(["a", "b"]);
    expect(keys(select(t, { limit: 2, reverse: true }))).toEqual(["\uffff", "😀"]);
    expect(keys(select(t, { min: "b", max: "d", limit: 1, reverse: true }))).toEqual(["c"]);
    expect(keys(select(t, { min: "b", limit: 100 }))).toEqual(["b", "c", "d", "\uffff", "😀"]);
    expect(json(select(t, { min: "c", limit: 1 }))).toEqual({ c: 3 });
  });

  it("is ignored on a leaf and on nothing", () => {
    expect(select(7, { min: "a", limit: 1 })).toBe(7);
    expect(select([1, 2, 3], { limit: 1 })).toEqual([1, 2, 3]);
    expect(select(undefined, { limit: 1 })).toBeUndefined();
  });

  it("an empty selection is undefined (null on the wire)", () => {
    expect(select(t, { min: "e", max: "f" })).toBeUndefined();
    expect(select(t, { min: "d", max: "c" })).toBeUndefined();
    expect(select(t, { min: "😁" })).toBeUndefined();
  });

  it("does not modify the node", () => {
    const frozen = deepFreeze(tree('{"a": {"x": 1}, "b": 2}'));
    expect(json(select(frozen, { limit: 1 }))).toEqual({ a: { x: 1 } });
  });
});

describe("getNode", () => {
  const t = tree('{"a": {"b": [1, 2]}, "c": 1}');
  it("reads objects, leaves and nothing", () => {
    expect(getNode(t, [])).toBe(t);
    expect(json(getNode(t, ["a"]))).toEqual({ b: [1, 2] });
    expect(getNode(t, ["a", "b"])).toEqual([1, 2]);
    expect(getNode(t, ["a", "b", "0"])).toBeUndefined(); // arrays are opaque
    expect(getNode(t, ["c", "x"])).toBeUndefined();
    expect(getNode(t, ["z"])).toBeUndefined();
  });
});

describe("restrict", () => {
  const m = (input: { merge?: unknown; delete?: unknown }) => mutation(input);
  const r = (mu: Mutation, path: string[]) => {
    const out = restrict(mu, path);
    return out === null ? null : json(out);
  };

  it("keeps the parts at the watched path", () => {
    expect(r(m({ merge: { a: { b: 1 } } }), ["a", "b"])).toEqual({
      merge: { a: { b: 1 } },
      delete: {},
    });
    expect(r(m({ delete: { a: { b: true } } }), ["a", "b"])).toEqual({
      merge: {},
      delete: { a: { b: true } },
    });
  });

  it("keeps the parts below the watched path, rooted at []", () => {
    const mu = m({
      merge: { a: { b: { c: 1 }, x: 1 }, y: 1 },
      delete: { a: { b: { d: true }, z: true } },
    });
    expect(r(mu, ["a", "b"])).toEqual({
      merge: { a: { b: { c: 1 } } },
      delete: { a: { b: { d: true } } },
    });
    expect(r(mu, ["a"])).toEqual({
      merge: { a: { b: { c: 1 }, x: 1 } },
      delete: { a: { b: { d: true }, z: true } },
    });
  });

  it("turns a delete above the watched path into a delete of the path", () => {
    expect(r(m({ delete: { a: true } }), ["a", "b", "c"])).toEqual({
      merge: {},
      delete: { a: { b: { c: true } } },
    });
  });

  it("turns a leaf merged above the watched path into a delete of the path", () => {
    expect(r(m({ merge: { a: 5 } }), ["a", "b"])).toEqual({
      merge: {},
      delete: { a: { b: true } },
    });
    expect(r(m({ merge: { a: { b: [1] } } }), ["a", "b", "c"])).toEqual({
      merge: {},
      delete: { a: { b: { c: true } } },
    });
  });

  it("keeps a delete above together with a merge below (replace)", () => {
    expect(r(m({ delete: { a: true }, merge: { a: { b: { c: 1 } } } }), ["a", "b"])).toEqual({
      merge: { a: { b: { c: 1 } } },
      delete: { a: { b: true } },
    });
  });

  it("is null for unrelated mutations", () => {
    expect(r(m({ merge: { x: 1 } }), ["a"])).toBeNull();
    expect(r(m({ merge: { a: { c: 1 } } }), ["a", "b"])).toBeNull();
    expect(r(m({ delete: { a: { c: true } } }), ["a", "b"])).toBeNull();
    expect(r(m({}), ["a"])).toBeNull();
    expect(r(m({}), [])).toBeNull();
  });

  it("still delivers a delete of an absent path under the watched path (shape, not data)", () => {
    const mu = m({ delete: { a: { nothing: { here: true } } } });
    expect(r(mu, ["a"])).toEqual({ merge: {}, delete: { a: { nothing: { here: true } } } });
  });

  it("at [] is the whole mutation", () => {
    const mu = m({ merge: { x: 1 }, delete: { y: true } });
    expect(r(mu, [])).toEqual({ merge: { x: 1 }, delete: { y: true } });
  });

  it("applied to a tree, gives the same subtree as the whole mutation", () => {
    const t = tree('{"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": 4}');
    const mu = m({
      delete: { a: { b: { c: true } }, f: true },
      merge: { a: { b: { g: 5 }, e: 6 } },
    });
    const whole = applyMutation(t, mu);
    const part = applyMutation(t, restrict(mu, ["a", "b"]) ?? mutation({}));
    expect(json(getNode(part, ["a", "b"]))).toEqual(json(getNode(whole, ["a", "b"])));
    expect(json(getNode(part, ["a", "b"]))).toEqual({ d: 2, g: 5 });
  });
});

describe("snapshotMutation", () => {
  it("below the root: deletes the path, then merges the value", () => {
    expect(json(snapshotMutation(["a", "b"], tree('{"c": 1}')))).toEqual({
      merge: { a: { b: { c: 1 } } },
      delete: { a: { b: true } },
    });
    expect(json(snapshotMutation(["a"], 5))).toEqual({ merge: { a: 5 }, delete: { a: true } });
    expect(json(snapshotMutation(["a"], undefined))).toEqual({ merge: {}, delete: { a: true } });
  });

  it("at the root: the whole tree and no delete", () => {
    expect(json(snapshotMutation([], tree('{"c": 1}')))).toEqual({ merge: { c: 1 }, delete: {} });
    expect(json(snapshotMutation([], undefined))).toEqual({ merge: {}, delete: {} });
  });

  it("applied to any replica, replaces its copy of the subtree", () => {
    const server = tree('{"a": {"b": {"c": 1}}, "x": 1}');
    const stale = tree('{"a": {"b": {"old": 1}, "keep": 1}, "x": 2}');
    const replica = applyMutation(stale, snapshotMutation(["a", "b"], getNode(server, ["a", "b"])));
    expect(json(replica)).toEqual({ a: { b: { c: 1 }, keep: 1 }, x: 2 });
  });
});

describe("combine and diff", () => {
  it("combine equals applying one mutation after the other", () => {
    const t = tree('{"a": {"x": 1}, "b": 5, "c": {"d": {"e": 1}}}');
    const a = mutation({ delete: { c: { d: true } }, merge: { a: { y: 2 }, b: 6, c: { k: 1 } } });
    const b = mutation({ delete: { a: { x: true } }, merge: { b: { z: 1 }, c: { d: 7 } } });
    const seq = applyMutation(applyMutation(t, a), b);
    expect(json(applyMutation(t, combine(a, b)))).toEqual(json(seq));
    expect(json(seq)).toEqual({ a: { y: 2 }, b: { z: 1 }, c: { d: 7, k: 1 } });
  });

  it("combine: an object merged onto a merged leaf deletes what the target held", () => {
    const t = tree('{"a": {"old": 1}}');
    const a = mergeAt(["a"], 1);
    const b = mergeAt(["a", "new"], 1);
    expect(json(combine(a, b))).toEqual({ merge: { a: { new: 1 } }, delete: { a: true } });
    expect(json(applyMutation(t, combine(a, b)))).toEqual({ a: { new: 1 } });
  });

  it("combine is exact except when b deletes the whole of an object a merged over a leaf", () => {
    // Documented limitation (docs/tree.md): {p: 5} then merge {p: {x: 1}} then delete p/x leaves
    // nothing at p, but no single mutation can delete p when it holds a leaf and keep it when it
    // holds an object. combine keeps the target's data, which is right for objects.
    const a = mergeAt(["p", "x"], 1);
    const b = deleteAt(["p", "x"]);
    expect(json(combine(a, b))).toEqual({ merge: {}, delete: { p: { x: true } } });
    const objectTarget = tree('{"p": {"y": 1}}');
    expect(json(applyMutation(objectTarget, combine(a, b)))).toEqual(
      json(applyMutation(applyMutation(objectTarget, a), b)),
    );
  });

  it("diff gives the mutation from one tree to another", () => {
    const a = tree('{"a": {"x": 1, "y": [1]}, "b": 5, "c": {"d": 1}, "gone": 1}');
    const b = tree('{"a": {"x": 1, "y": [2]}, "b": {"z": 1}, "c": 1, "new": {"n": 1}}');
    const d = diff(a, b);
    expect(json(d)).toEqual({
      merge: { a: { y: [2] }, b: { z: 1 }, c: 1, new: { n: 1 } },
      delete: { gone: true },
    });
    expect(json(applyMutation(a, d))).toEqual(json(b));
    expect(isEmptyMutation(diff(a, a))).toBe(true);
  });
});
