/**
 * Last-writer-wins conflict resolution per leaf, by hybrid-logical-clock stamp (core/hlc.ts).
 * Pure: given a mutation, its stamp and the stored stamps that concern it, computes the
 * mutation to commit and the tombstones to record. docs/conflicts.md explains the model; in short,
 * the tree after any set of writes, received in any order, equals the tree obtained by applying
 * them one after the other in stamp order.
 *
 * A write is decomposed into ops sharing its stamp T: `delete(D)` for every path its delete tree
 * marks, then `set(L, leaf)` for every leaf of its merge tree. The store keeps the stamp of every
 * leaf and tombstones `(path, stamp)`. Per op:
 *
 * - `delete(D)`: every leaf at or under D older than T goes; tombstone (D, T).
 * - `set(L)`: every leaf at or under L older than T goes, and every leaf at an ancestor of L older
 *   than T goes too (an object merged onto a leaf replaces it), leaving a tombstone at its path
 *   with ITS OWN stamp (its coverage of older writes below it persists). The set then wins unless
 *   something newer remains: a leaf at, under or above L, or a tombstone at L or above with a
 *   stamp greater than T. A set that loses leaves a tombstone (L, T): the leaves it removed stay
 *   covered against older writes arriving later.
 *
 * Ties: stamps of different writers never tie (they carry the node id). Within one write, deletes
 * apply before merges, so a tombstone with the write's own stamp does not block its sets.
 */
import type { Stamp } from "./hlc.ts";
import { encodePath, keysBelow } from "./store/encoding.ts";
import { emptyTree, has, isTree } from "./tree.ts";
import type { DeleteTree, Mutation, Node, Path, Tree } from "./types.ts";

/** The key of a path in entry maps: the store's path encoding (core/store/encoding.ts). */
export const pathKey = encodePath;

export function keyPath(key: string): string[] {
  return keysBelow(key, pathKey([]));
}

/**
 * A tombstone. `cover`: writes at or under its path older than this lose (a delete, or a set that
 * lost or was replaced, covered them). `shadow`: sets at strict ancestors of its path older than
 * this lose (a set below an ancestor replaced the ancestor's leaf, even if that set is gone now).
 * "" means none.
 */
export interface Tomb {
  cover: Stamp;
  shadow: Stamp;
}

/** Stored stamps relevant to a write. Unstamped leaves (written without a clock) have stamp "". */
export interface StampEntries {
  /** Leaves at, under or above the write's paths: path key -> stamp. */
  leaves: Map<string, Stamp>;
  /** Tombstones at, under or above the write's paths: path key -> tombstone. */
  tombstones: Map<string, Tomb>;
  /** The greatest stamp of the leaves at or under some paths (absent: no leaf there). */
  maxUnder: Map<string, Stamp>;
}

/** What the store must read: whole subtrees, single paths, and greatest stamps of subtrees. */
export interface StampQuery {
  /** Every leaf and tombstone at or under each of these paths. */
  subtrees: Path[];
  /** The leaf and the tombstone at exactly each of these paths. */
  exact: Path[];
  /** The greatest stamp of the leaves at or under each of these paths. */
  maxUnder: Path[];
}

/**
 * A part of a write that lost to a later write: the path of the op (a merged leaf, or a delete
 * that removed only the older part of its subtree) and the stamp of the newest write that beat it.
 */
export interface LostPart {
  path: Path;
  winnerTs: Stamp;
}

export interface Resolution {
  /** The mutation to commit: what of the write wins. */
  mutation: Mutation;
  /** The parts of the write that lost, each with the winner's stamp, in op order (deletes, then sets). */
  lost: LostPart[];
  /** Tombstones to record (keep the greater stamps per path): path key -> tombstone. */
  tombstones: Map<string, Tomb>;
  /**
   * Paths the resolution itself accounted for (its deletes, removals of particular older leaves):
   * `finalize` adds no tombstone for them.
   */
  covered: Set<string>;
}

/** The ops of a mutation: delete paths, then merged leaves. */
export function ops(m: Mutation): { deletes: string[][]; sets: [string[], Node][] } {
  const deletes: string[][] = [];
  const sets: [string[], Node][] = [];
  const walkDelete = (node: DeleteTree, path: string[]) => {
    for (const key in node) {
      const mark = node[key] as true | DeleteTree;
      if (mark === true) deletes.push([...path, key]);
      else walkDelete(mark, [...path, key]);
    }
  };
  const walkMerge = (node: Tree, path: string[]) => {
    for (const key in node) {
      const value = node[key] as Node;
      if (isTree(value)) walkMerge(value, [...path, key]);
      else sets.push([[...path, key], value]);
    }
  };
  walkDelete(m.delete, []);
  walkMerge(m.merge, []);
  return { deletes, sets };
}

function uniquePaths(paths: Path[]): Path[] {
  const out = new Map<string, Path>();
  for (const p of paths) out.set(pathKey(p), p);
  return [...out.values()];
}

/** The stored entries `resolveWrite(m, …)` looks at (a write that may lose). */
export function stampQuery(m: Mutation): StampQuery {
  const { deletes, sets } = ops(m);
  const exact: Path[] = [];
  for (const [l] of sets) for (let i = 1; i < l.length; i++) exact.push(l.slice(0, i));
  return { subtrees: uniquePaths([...deletes, ...sets.map(([l]) => l)]), exact: uniquePaths(exact), maxUnder: [] };
}

/** The stored entries `finalize(m, …)` looks at (cheap: no subtree is listed). */
export function finalizeQuery(m: Mutation): StampQuery {
  const { deletes, sets } = ops(m);
  const exact: Path[] = [];
  for (const [l] of sets) for (let i = 1; i < l.length; i++) exact.push(l.slice(0, i));
  return { subtrees: [], exact: uniquePaths(exact), maxUnder: uniquePaths(deletes) };
}

/** The entries of `entries` that `query` asks for (what a store would return). */
export function filterEntries(entries: { leaves: Map<string, Stamp>; tombstones: Map<string, Tomb> }, query: StampQuery): StampEntries {
  const prefixes = query.subtrees.map(pathKey);
  const exact = new Set(query.exact.map(pathKey));
  const inRange = (k: string) => exact.has(k) || prefixes.some((p) => k.startsWith(p));
  const leaves = new Map<string, Stamp>();
  for (const [k, s] of entries.leaves) if (inRange(k)) leaves.set(k, s);
  const tombstones = new Map<string, Tomb>();
  for (const [k, t] of entries.tombstones) if (inRange(k)) tombstones.set(k, t);
  const maxUnder = new Map<string, Stamp>();
  for (const p of query.maxUnder) {
    const prefix = pathKey(p);
    for (const [k, s] of entries.leaves) {
      if (!k.startsWith(prefix)) continue;
      const old = maxUnder.get(prefix);
      if (old === undefined || old < s) maxUnder.set(prefix, s);
    }
  }
  return { leaves, tombstones, maxUnder };
}

function setIn(root: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = root;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i] as string;
    let next = has(node, key) ? node[key] : undefined;
    if (next === true) return; // already deleted whole
    if (next === undefined || !isTree(next as Node)) {
      next = Object.create(null) as Record<string, unknown>;
      node[key] = next;
    }
    node = next as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

/** Records a tombstone, keeping the greater stamps. */
export function putTomb(map: Map<string, Tomb>, key: string, cover: Stamp, shadow: Stamp): void {
  const old = map.get(key);
  if (!old) map.set(key, { cover, shadow });
  else map.set(key, { cover: later(old.cover, cover), shadow: later(old.shadow, shadow) });
}

/** The later of two stamps (string order is time order). */
export function later(a: Stamp, b: Stamp): Stamp {
  if (a < b) return b;
  return a;
}

/**
 * The stamp of the newest stored entry, later than `ts`, that beats an op of a write stamped `ts`
 * at `path` (the rule of `resolveWrite`): for a set, a leaf at, under or above the path, a
 * tombstone at or above it whose cover is later, or a tombstone under it whose shadow is later;
 * for a delete, a leaf at or under the path (what it could not remove), else a tombstone at or
 * under it whose shadow is later (such a leaf was there and has been deleted since: only a
 * replayed write, answered after that, finds it so). Undefined when no stored entry is later. The
 * newest, not the oldest, because the value the path holds now is that newest write's (or
 * younger): it is the winner a user sees.
 */
export function winnerOf(op: "set" | "delete", path: Path, ts: Stamp, entries: StampEntries): Stamp | undefined {
  const key = pathKey(path);
  let winner: Stamp | undefined;
  const see = (s: Stamp) => {
    if (s > ts && (winner === undefined || s > winner)) winner = s;
  };
  for (const [k, s] of entries.leaves) if (k.startsWith(key)) see(s);
  if (op === "delete") {
    if (winner === undefined) for (const [k, t] of entries.tombstones) if (k.startsWith(key)) see(t.shadow);
    return winner;
  }
  for (let i = 1; i < path.length; i++) {
    const a = pathKey(path.slice(0, i));
    const s = entries.leaves.get(a);
    if (s !== undefined) see(s);
    const t = entries.tombstones.get(a);
    if (t !== undefined) see(t.cover);
  }
  for (const [k, t] of entries.tombstones) {
    if (k === key) see(t.cover);
    else if (k.startsWith(key)) see(t.shadow);
  }
  return winner;
}

/**
 * Resolves a write with stamp `ts` against the stored `entries` (at least those `stampQuery(m)`
 * names). Pure: `entries` is not modified.
 */
export function resolveWrite(m: Mutation, ts: Stamp, entries: StampEntries): Resolution {
  const leaves = new Map(entries.leaves);
  const tombstones = new Map<string, Tomb>();
  const covered = new Set<string>();
  const merge = emptyTree();
  const del = Object.create(null) as DeleteTree;
  const lost: LostPart[] = [];
  const { deletes, sets } = ops(m);

  const tombAt = (k: string): Tomb | undefined => {
    const a = entries.tombstones.get(k);
    const b = tombstones.get(k);
    if (!a) return b;
    if (!b) return a;
    return { cover: later(a.cover, b.cover), shadow: later(a.shadow, b.shadow) };
  };
  const under = (prefix: string) => [...leaves.keys()].filter((k) => k.startsWith(prefix));

  for (const d of deletes) {
    const prefix = pathKey(d);
    const keys = under(prefix);
    const older = keys.filter((k) => (leaves.get(k) as Stamp) < ts);
    let shadow = "";
    for (const k of older) {
      const s = leaves.get(k) as Stamp;
      if (s > shadow) shadow = s;
    }
    if (older.length === keys.length) setIn(del, d, true);
    else {
      for (const k of older) setIn(del, keyPath(k), true);
      // Newer leaves under D survive: this delete lost to them in part.
      lost.push({ path: d, winnerTs: winnerOf("delete", d, ts, entries) ?? ts });
    }
    for (const k of older) {
      leaves.delete(k);
      covered.add(k);
    }
    putTomb(tombstones, prefix, ts, shadow);
    covered.add(prefix);
  }

  for (const [l, value] of sets) {
    const key = pathKey(l);
    const removals: string[] = [];
    // At or under L: older leaves go.
    for (const k of under(key)) {
      if ((leaves.get(k) as Stamp) < ts) {
        removals.push(k);
        leaves.delete(k);
      }
    }
    // Ancestor leaves: older ones go, leaving a tombstone with their own stamp.
    let blocked = false;
    for (let i = 1; i < l.length; i++) {
      const a = pathKey(l.slice(0, i));
      const s = leaves.get(a);
      if (s === undefined) continue;
      if (s < ts) {
        leaves.delete(a);
        putTomb(tombstones, a, s, s);
        removals.push(a);
      } else blocked = true;
    }
    // A newer leaf below, or a newer set below that is gone now, replaced this one.
    if (under(key).length > 0) blocked = true;
    for (const [k, t] of entries.tombstones) if (k !== key && k.startsWith(key) && t.shadow > ts) blocked = true;
    for (const [k, t] of tombstones) if (k !== key && k.startsWith(key) && t.shadow > ts) blocked = true;
    // A newer delete or set at L or above covers it.
    for (let i = 1; i <= l.length && !blocked; i++) {
      const t = tombAt(pathKey(l.slice(0, i)));
      if (t !== undefined && t.cover > ts) blocked = true;
    }
    for (const k of removals) covered.add(k);
    if (!blocked) {
      // The leaf merge replaces its subtree and any ancestor leaf by itself.
      setIn(merge, l, value);
      leaves.set(key, ts);
    } else {
      for (const k of removals) setIn(del, keyPath(k), true);
      putTomb(tombstones, key, ts, ts);
      // (`?? ts`: only a stored entry with this very stamp, a client reusing a stamp, blocks
      // without a later one.)
      lost.push({ path: l, winnerTs: winnerOf("set", l, ts, entries) ?? ts });
    }
  }
  return { mutation: { merge, delete: del }, lost, tombstones, covered };
}

/** The resolution of a write whose stamp is newer than every stamp stored: it wins whole. */
export function winningResolution(m: Mutation): Resolution {
  return { mutation: m, lost: [], tombstones: new Map(), covered: new Set() };
}

/**
 * Every tombstone to record for `committed` (the resolved mutation plus any interceptor
 * additions, all with stamp `ts`): those of the resolution, a tombstone per delete it did not
 * account for, and one per ancestor leaf that a merged leaf replaces (with that leaf's own stamp).
 * `entries` holds at least what `finalizeQuery(committed)` names.
 */
export function finalize(committed: Mutation, ts: Stamp, resolution: Resolution, entries: StampEntries): Map<string, Tomb> {
  const out = new Map(resolution.tombstones);
  const { deletes, sets } = ops(committed);
  for (const d of deletes) {
    const k = pathKey(d);
    if (resolution.covered.has(k)) continue;
    putTomb(out, k, ts, entries.maxUnder.get(k) ?? "");
  }
  for (const [l] of sets) {
    for (let i = 1; i < l.length; i++) {
      const a = pathKey(l.slice(0, i));
      const s = entries.leaves.get(a);
      if (s !== undefined && !resolution.covered.has(a)) putTomb(out, a, s, s);
    }
  }
  return out;
}
