/**
 * Paths as one text key per leaf row. Every key is followed by U+0001, and the root is U+0001
 * alone, so under `COLLATE "C"` (byte order) the rows sort exactly as the tree does, and the
 * subtree of any path is one contiguous range: `[enc(P), enc(P) with its last U+0001 -> U+0002)`.
 * Keys cannot hold control characters, so U+0001/U+0002 never collide with key text, and no
 * `LIKE` pattern is ever built from user keys.
 */
import { isTree } from "../tree.ts";
import type { Node, Path, Tree } from "../types.ts";

export const SEP = "\u0001";
const AFTER = "\u0002";
/** Separates rows in a packed read (`treeFromPacked`). */
export const ROW_SEP = "\u0002";

export function encodePath(path: Path): string {
  let out = SEP;
  for (const key of path) out += key + SEP;
  return out;
}

/** The exclusive upper bound of the subtree whose encoded path is `encoded`. */
export function upperBound(encoded: string): string {
  return encoded.slice(0, -1) + AFTER;
}

/** The keys of an encoded path below `prefix` (an encoded ancestor). */
export function keysBelow(encoded: string, prefix: string): string[] {
  const rest = encoded.slice(prefix.length);
  if (rest === "") return [];
  const keys = rest.split(SEP);
  keys.pop();
  return keys;
}

/** JSON.parse giving null-prototype objects, so keys like `__proto__` stay plain data. */
export function parseJson<T>(text: string): T {
  // Most leaves hold no object at all: skip the walk for them.
  if (!text.includes("{")) return JSON.parse(text) as T;
  // A plain parse, then every object's prototype dropped in place: half the time of a reviver
  // (called once per value, 100,000 times for a 100,000-leaf change) that copied each object.
  return withoutPrototypes(JSON.parse(text)) as T;
}

function withoutPrototypes(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    for (const item of value) withoutPrototypes(item);
    return value;
  }
  // JSON.parse makes `__proto__` an own data property; with no prototype it stays plain data.
  Object.setPrototypeOf(value, null);
  for (const key in value) withoutPrototypes((value as Record<string, unknown>)[key]);
  return value;
}

/**
 * The value read at a path, built from its rows as PostgreSQL packs them (one text per column
 * instead of one protocol row per leaf, see `READ_SQL` in sql.ts):
 * - `paths`: the rows' encoded paths, separated by U+0002; each starts with the read path's
 *   encoding, `skip` characters long;
 * - `values`: the rows' JSON texts in the same order, separated by commas.
 *
 * Keys hold no control characters and JSON text escapes them, so the packing is unambiguous. Rows
 * may come in any order. Objects get null prototypes (`__proto__` is plain data). Returns the
 * object built from the rows below the path, else the leaf at the path, else undefined.
 */
export function treeFromPacked(paths: string, values: string, skip: number): Node | undefined {
  const leaves = parseJson<Node[]>(`[${values}]`);
  let root: Tree | undefined;
  let here: Node | undefined;
  let pos = 0;
  for (let r = 0; r < leaves.length; r++) {
    let end = paths.indexOf(ROW_SEP, pos);
    if (end < 0) end = paths.length;
    const leaf = leaves[r] as Node;
    let start = pos + skip;
    if (start >= end) {
      here = leaf; // the row at the path itself
    } else {
      root ??= Object.create(null) as Tree;
      let node: Tree = root;
      for (;;) {
        // Every key, the last included, is followed by SEP, so `sep` stays below `end`.
        const sep = paths.indexOf(SEP, start);
        const key = paths.slice(start, sep);
        if (sep + 1 >= end) {
          node[key] = leaf;
          break;
        }
        let next = node[key];
        if (!isTree(next)) {
          next = Object.create(null) as Tree;
          node[key] = next;
        }
        node = next;
        start = sep + 1;
      }
    }
    pos = end + 1;
  }
  return root ?? here;
}
