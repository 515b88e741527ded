/**
 * The tree the transfer suites move: 100,000 leaves with hostile keys at every level and values
 * of every JSON kind (test/cli.transfer.test.ts, test/cli.roundtrip.test.ts).
 */
import type { Tree } from "../../core/types.ts";

/** JSON.parse keeping `__proto__` and friends as plain keys. */
export function parse(text: string): unknown {
  return JSON.parse(text, (_k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.assign(Object.create(null), v) : v));
}

export const HOSTILE = [
  "__proto__", "constructor", "toString", "hasOwnProperty", ":", "/", ".", "$", "#", "[", "]", "%", "_", "*", " ", "a b",
  "\"", "\\", "'", "😀", "\uFFFD", "\u2028", "\u00e9", "e\u0301", "~0", "~1", "..", "%2F", "$uid", "null", "true", "0", "-1",
  "x".repeat(768), "é".repeat(384),
];

/** 100,000 leaves: hostile keys at every level, values of every JSON kind. */
export function bigTree(): Tree {
  const root = Object.create(null) as Tree;
  let leaves = 0;
  for (let i = 0; leaves < 100_000; i++) {
    const top = HOSTILE[i % (HOSTILE.length - 2)] as string; // (the two longest keys get no suffix below)
    const group = (root[`${top}:${Math.floor(i / (HOSTILE.length - 2))}`] ??= Object.create(null)) as Tree;
    for (let j = 0; j < 50 && leaves < 100_000; j++, leaves++) {
      const key = j < HOSTILE.length ? (HOSTILE[j] as string) : `k${j}`;
      const kind = (i + j) % 5;
      group[key] =
        kind === 0 ? `v${i}.${j} ✓ "quoted" \\ \u2028` : kind === 1 ? i * 1000 + j + 0.5 : kind === 2 ? j % 2 === 0 : kind === 3 ? [i, null, { __proto__: j, "": "x" }] : -i;
    }
  }
  return root;
}
