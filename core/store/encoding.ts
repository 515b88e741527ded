/**
 * Paths as one text key per leaf row. Every key is followed by U+0001, and the root is U+0001
 * alone, so under `COLLATE "C"` (byte order) the rows sort exactly as the tree does, and the
 * subtree of any path is one contiguous range: `[enc(P), enc(P) with its last U+0001 -> U+0002)`.
 * Keys cannot hold control characters, so U+0001/U+0002 never collide with key text, and no
 * `LIKE` pattern is ever built from user keys.
 */
import type { Path } from "../types.ts";

export const SEP = "\u0001";
const AFTER = "\u0002";

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
