/**
 * The tree algebra: pure functions over normalized trees and mutations, shared by the server,
 * the stores' tests and the client. The rules implemented here are the contract's (sections 1-2)
 * and are explained in docs/tree.md; this file says how, not what.
 *
 * Every object this module builds has a null prototype, so keys such as `__proto__` or
 * `constructor` are plain data and can never reach `Object.prototype`.
 */
import { KoraError, badInput, showPath } from "./errors.ts";
import {
  DEFAULT_LIMITS,
  type ChildSummary,
  type DeleteTree,
  type Json,
  type KeysOptions,
  type KeysResult,
  type Leaf,
  type Limits,
  type Mutation,
  type Node,
  type Path,
  type ReadOptions,
  type Tree,
} from "./types.ts";

/** Deepest nesting accepted inside array leaves. Arrays are opaque, but unbounded nesting would
 * exhaust the stack of every JSON encoder on the way to PostgreSQL. */
export const MAX_ARRAY_NESTING = 256;

const hasOwn = Object.prototype.hasOwnProperty;

export function emptyTree(): Tree {
  return Object.create(null) as Tree;
}

export function isTree(node: unknown): node is Tree {
  return typeof node === "object" && node !== null && !Array.isArray(node);
}

export function has(obj: object, key: string): boolean {
  return hasOwn.call(obj, key);
}

/** Own keys of a tree, in byte order of their UTF-8 encoding. */
export function sortedKeys(obj: object): string[] {
  return Object.keys(obj).sort(compareKeys);
}

// ---------------------------------------------------------------------------------------------
// Keys and paths

/**
 * Compares keys by the bytes of their UTF-8 encoding (PostgreSQL's `COLLATE "C"`). UTF-8 byte
 * order equals code point order; UTF-16 code unit order differs only where a surrogate meets a
 * unit at or above U+E000, so those units are shifted before comparing.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x = x <= 0xdfff ? x + 0x2000 : x - 0x800;
    if (y >= 0xd800) y = y <= 0xdfff ? y + 0x2000 : y - 0x800;
    return x - y;
  }
  return a.length - b.length;
}

/** Length of a string in bytes of UTF-8 (lone surrogates count as 3, as U+FFFD would). */
export function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

const CONTROL = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Checks one key found under `parent`; throws BAD_USER_INPUT naming the path. */
export function validateKey(key: unknown, parent: Path, limits: Limits = DEFAULT_LIMITS): string {
  if (typeof key !== "string") {
    throw badInput(`key at path ${showPath(parent)} is ${typeof key}; keys are strings`, parent);
  }
  if (key.length === 0) {
    throw badInput(`empty key at path ${showPath(parent)}; keys are non-empty strings`, parent);
  }
  const match = CONTROL.exec(key);
  if (match) {
    const code = match[0].charCodeAt(0).toString(16).padStart(4, "0").toUpperCase();
    throw badInput(
      `key ${JSON.stringify(key)} at path ${showPath(parent)} holds the control character U+${code}; keys may not contain U+0000-U+001F or U+007F`,
      [...parent, key],
    );
  }
  if (LONE_SURROGATE.test(key)) {
    throw badInput(
      `key ${JSON.stringify(key)} at path ${showPath(parent)} holds a lone UTF-16 surrogate; keys must be valid Unicode`,
      parent,
    );
  }
  const bytes = utf8Length(key);
  if (bytes > limits.maxKeyBytes) {
    throw badInput(
      `key ${JSON.stringify(key.slice(0, 32))}… at path ${showPath(parent)} is ${bytes} bytes of UTF-8; keys may be at most ${limits.maxKeyBytes} bytes`,
      parent,
    );
  }
  return key;
}

/** Checks a path given by a client: a list of valid keys, at most `maxDepth` long. */
export function validatePath(path: unknown, limits: Limits = DEFAULT_LIMITS): Path {
  if (!Array.isArray(path)) throw badInput("a path is a list of keys, e.g. [\"user:info\", \"dax\"]");
  if (path.length > limits.maxDepth) {
    throw badInput(
      `path ${showPath(path.slice(0, 4))}… has ${path.length} keys; the tree is at most ${limits.maxDepth} levels deep`,
      path,
    );
  }
  for (let i = 0; i < path.length; i++) validateKey(path[i], path.slice(0, i), limits);
  return path as Path;
}

// ---------------------------------------------------------------------------------------------
// Normalizing input

function checkString(s: string, path: Path): void {
  // jsonb cannot hold U+0000, and lone surrogates are not valid UTF-8: reject rather than mangle.
  if (s.includes("\u0000")) {
    throw badInput(`string value at path ${showPath(path)} holds U+0000, which cannot be stored`, path);
  }
  if (LONE_SURROGATE.test(s)) {
    throw badInput(`string value at path ${showPath(path)} holds a lone UTF-16 surrogate; strings must be valid Unicode`, path);
  }
}

function checkArray(value: Json[], path: Path, nesting: number): void {
  if (nesting > MAX_ARRAY_NESTING) {
    throw badInput(`array at path ${showPath(path)} is nested more than ${MAX_ARRAY_NESTING} levels deep`, path);
  }
  for (const item of value) checkOpaque(item, path, nesting);
}

function checkOpaque(value: Json, path: Path, nesting: number): void {
  if (typeof value === "string") checkString(value, path);
  else if (typeof value === "number") {
    if (!Number.isFinite(value)) throw badInput(`number at path ${showPath(path)} is not finite`, path);
  } else if (Array.isArray(value)) checkArray(value, path, nesting + 1);
  else if (value !== null && typeof value === "object") {
    checkPlainObject(value, path);
    if (nesting + 1 > MAX_ARRAY_NESTING) {
      throw badInput(`array at path ${showPath(path)} is nested more than ${MAX_ARRAY_NESTING} levels deep`, path);
    }
    for (const key of Object.keys(value)) {
      checkString(key, path);
      checkOpaque((value as Record<string, Json>)[key] as Json, path, nesting + 1);
    }
  } else if (value !== null && typeof value !== "boolean") {
    throw badInput(`value at path ${showPath(path)} is not JSON`, path);
  }
}

/**
 * Only plain objects are JSON objects. A Date, Map, class instance or typed array has no own
 * enumerable keys worth storing (a Date would silently merge nothing), so it is refused by name.
 */
function checkPlainObject(value: object, path: Path): void {
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return;
  const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
  throw badInput(`value at path ${showPath(path)} is a ${typeof name === "string" && name ? name : "non-plain object"}, not a JSON object`, path);
}

/**
 * Normalizes a value to merge at `path`: validates keys and depth, rejects `null`, drops empty
 * objects. Returns `undefined` when nothing is left to write (`{}` merges nothing).
 */
export function normalizeValue(value: unknown, path: Path, limits: Limits = DEFAULT_LIMITS): Node | undefined {
  if (value === null || value === undefined) {
    throw badInput(
      `null at path ${showPath(path)}; null is not a value (use delete to remove data)`,
      path,
    );
  }
  if (Array.isArray(value)) {
    checkLeafDepth(path, limits);
    checkArray(value as Json[], path, 1);
    return value as Json[];
  }
  switch (typeof value) {
    case "string":
      checkLeafDepth(path, limits);
      checkString(value, path);
      return value;
    case "boolean":
      checkLeafDepth(path, limits);
      return value;
    case "number":
      checkLeafDepth(path, limits);
      if (!Number.isFinite(value)) throw badInput(`number at path ${showPath(path)} is not finite`, path);
      return value;
    case "object": {
      checkPlainObject(value as object, path);
      let out: Tree | undefined;
      for (const key of Object.keys(value)) {
        if (path.length >= limits.maxDepth) tooDeep(path, limits);
        validateKey(key, path, limits);
        const child = normalizeValue((value as Record<string, unknown>)[key], [...path, key], limits);
        if (child === undefined) continue;
        out ??= emptyTree();
        out[key] = child;
      }
      return out;
    }
    default:
      throw badInput(`value at path ${showPath(path)} is ${typeof value}, not JSON`, path);
  }
}

/** Checked before descending, so hostile nesting fails fast instead of exhausting the stack. */
function tooDeep(path: Path, limits: Limits): never {
  throw badInput(
    `object at path ${showPath(path.slice(0, 4))}… nests deeper than ${limits.maxDepth} levels; the tree is at most ${limits.maxDepth} levels deep`,
    path.slice(0, limits.maxDepth),
  );
}

function checkLeafDepth(path: Path, limits: Limits): void {
  if (path.length > limits.maxDepth) {
    throw badInput(
      `leaf at path ${showPath(path)} is ${path.length} levels deep; the tree is at most ${limits.maxDepth} levels deep`,
      path,
    );
  }
}

/**
 * Normalizes a delete tree found at `path`: leaves must be `true` or `1`. Returns `undefined`
 * when it marks nothing.
 */
export function normalizeDelete(value: unknown, path: Path, limits: Limits = DEFAULT_LIMITS): DeleteTree | true | undefined {
  if (value === true || value === 1) {
    checkLeafDepth(path, limits);
    return true;
  }
  if (!isTree(value)) {
    throw badInput(
      `delete at path ${showPath(path)} holds ${describe(value)}; leaves of delete must be true (or 1)`,
      path,
    );
  }
  let out: DeleteTree | undefined;
  for (const key of Object.keys(value)) {
    if (path.length >= limits.maxDepth) tooDeep(path, limits);
    validateKey(key, path, limits);
    const child = normalizeDelete((value as Record<string, unknown>)[key], [...path, key], limits);
    if (child === undefined) continue;
    out ??= Object.create(null) as DeleteTree;
    out[key] = child;
  }
  return out;
}

/** A short description of a rejected value for messages: never throws (bigint), never huge. */
function describe(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  text ??= typeof value;
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

/** Builds a normalized mutation from the `mutate(merge, delete)` arguments (both rooted at []). */
export function mutationFromInput(
  input: { merge?: unknown; delete?: unknown },
  limits: Limits = DEFAULT_LIMITS,
): Mutation {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw badInput("a mutation is { merge?, delete? }", []);
  }
  // A misspelt field (`delet`) would otherwise be dropped without a word.
  for (const key of Object.keys(input)) {
    if (key !== "merge" && key !== "delete") throw badInput(`a mutation is { merge?, delete? }; unknown field ${JSON.stringify(key)}`, []);
  }
  const mergeIn = input.merge ?? {};
  const deleteIn = input.delete ?? {};
  if (!isTree(mergeIn)) throw badInput("merge must be a JSON object rooted at []; the root is always an object", []);
  if (deleteIn === true || deleteIn === 1) throw badInput("the root [] cannot be deleted; delete its top-level keys", []);
  if (!isTree(deleteIn)) throw badInput("delete must be a JSON object rooted at [] whose leaves are true", []);
  const merge = (normalizeValue(mergeIn, [], limits) as Tree | undefined) ?? emptyTree();
  const del = normalizeDelete(deleteIn, [], limits);
  return { merge, delete: (del === true ? undefined : del) ?? (Object.create(null) as DeleteTree) };
}

/** The mutation of `merge(path, value)`. */
export function mergeAt(path: Path, value: unknown, limits: Limits = DEFAULT_LIMITS): Mutation {
  validatePath(path, limits);
  const node = normalizeValue(value, path, limits);
  if (path.length === 0 && node !== undefined && !isTree(node)) {
    throw badInput("cannot merge a leaf at the root []; the root is always an object", []);
  }
  return {
    merge: node === undefined ? emptyTree() : (inflate(path, node) as Tree),
    delete: Object.create(null) as DeleteTree,
  };
}

/** The mutation of `delete(path)`. */
export function deleteAt(path: Path, limits: Limits = DEFAULT_LIMITS): Mutation {
  validatePath(path, limits);
  if (path.length === 0) throw badInput("cannot delete the root []; delete its top-level keys", []);
  return { merge: emptyTree(), delete: inflate(path, true) as DeleteTree };
}

export function isEmptyMutation(m: Mutation): boolean {
  for (const _ in m.merge) return false;
  for (const _ in m.delete) return false;
  return true;
}

export function emptyMutation(): Mutation {
  return { merge: emptyTree(), delete: Object.create(null) as DeleteTree };
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Wraps `node` under `path`: `inflate(["a","b"], 1)` is `{a: {b: 1}}`. */
export function inflate<T>(path: Path, node: T): T | Record<string, unknown> {
  let out: unknown = node;
  for (let i = path.length - 1; i >= 0; i--) {
    const parent = Object.create(null) as Record<string, unknown>;
    parent[path[i] as string] = out;
    out = parent;
  }
  return out as T | Record<string, unknown>;
}

/** The node at `path`, or `undefined` when nothing is there. */
export function getNode(tree: Node | undefined, path: Path): Node | undefined {
  let node: Node | undefined = tree;
  for (const key of path) {
    if (!isTree(node) || !has(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

/** Selects among the direct children of a node as `path(min, max, limit, reverse)` does. */
export function select(node: Node | undefined, options: ReadOptions = {}): Node | undefined {
  if (!isTree(node)) return node;
  const { min, max, limit, reverse } = options;
  if (min === undefined && max === undefined && limit === undefined) return node;
  let keys = sortedKeys(node).filter(
    (k) => (min === undefined || compareKeys(k, min) >= 0) && (max === undefined || compareKeys(k, max) < 0),
  );
  if (limit !== undefined) keys = reverse ? keys.slice(Math.max(0, keys.length - limit)) : keys.slice(0, limit);
  if (keys.length === 0) return undefined;
  const out = emptyTree();
  for (const k of keys) out[k] = node[k] as Node;
  return out;
}

/** What a node is for a keys listing: an object or its leaf type. */
function nodeType(node: Node): ChildSummary["type"] {
  if (isTree(node)) return "object";
  if (Array.isArray(node)) return "array";
  return typeof node as "string" | "number" | "boolean";
}

/**
 * The keys-only listing of a node held in memory, as `Store.keys` lists one stored (virtual
 * paths, test stores). A leaf's size is its JSON.stringify length in bytes (the SQL stores count
 * PostgreSQL's own text, which may space arrays differently).
 */
export function listChildren(node: Node | undefined, options: KeysOptions): Omit<KeysResult, "version"> {
  if (node === undefined) return { node: undefined, children: [], more: false };
  if (!isTree(node)) return { node: nodeType(node), children: [], more: false };
  const { after, limit } = options;
  const valueBytes = options.valueBytes ?? 1024;
  const keys = sortedKeys(node).filter((k) => after === undefined || compareKeys(k, after) > 0);
  const children = keys.slice(0, limit).map((key): ChildSummary => {
    const child = node[key] as Node;
    const type = nodeType(child);
    if (type === "object") return { key, type };
    const bytes = utf8Length(JSON.stringify(child));
    return bytes <= valueBytes ? { key, type, value: child as Leaf, bytes } : { key, type, bytes };
  });
  return { node: "object", children, more: keys.length > limit };
}

// ---------------------------------------------------------------------------------------------
// Applying

function deleteFrom(node: Tree, del: DeleteTree): Tree | undefined {
  let out: Tree | undefined;
  for (const key in del) {
    if (!has(node, key)) continue;
    const mark = del[key] as true | DeleteTree;
    const child = node[key] as Node;
    let next: Node | undefined;
    if (mark === true) next = undefined;
    else if (isTree(child)) next = deleteFrom(child, mark);
    else continue; // nothing stored below a leaf
    out ??= copy(node);
    if (next === undefined) delete out[key];
    else out[key] = next;
  }
  if (out === undefined) return node;
  for (const _ in out) return out;
  return undefined;
}

function mergeInto(node: Tree | undefined, merge: Tree): Tree {
  const out = node === undefined ? emptyTree() : copy(node);
  for (const key in merge) {
    const value = merge[key] as Node;
    if (isTree(value)) {
      const existing = has(out, key) ? out[key] : undefined;
      out[key] = mergeInto(isTree(existing) ? existing : undefined, value);
    } else out[key] = value;
  }
  return out;
}

function copy(node: Tree): Tree {
  const out = emptyTree();
  for (const key in node) out[key] = node[key] as Node;
  return out;
}

/** Applies a mutation: deletes first, then merges. Pure: `tree` is not modified. */
export function applyMutation(tree: Tree, m: Mutation): Tree {
  const afterDelete = deleteFrom(tree, m.delete) ?? emptyTree();
  let hasMerge = false;
  for (const _ in m.merge) {
    hasMerge = true;
    break;
  }
  return hasMerge ? mergeInto(afterDelete, m.merge) : afterDelete;
}

// ---------------------------------------------------------------------------------------------
// Combining, restricting, diffing

function unionDelete(a: DeleteTree, b: DeleteTree): DeleteTree {
  const out = Object.create(null) as DeleteTree;
  for (const key in a) out[key] = a[key] as true | DeleteTree;
  for (const key in b) {
    const x = out[key];
    const y = b[key] as true | DeleteTree;
    out[key] = x === undefined || x === true || y === true ? (x === true ? true : y) : unionDelete(x, y);
  }
  return out;
}

/** `merge` without what `del` removes; `undefined` when nothing is left. */
function withoutDeleted(merge: Tree, del: DeleteTree): Tree | undefined {
  const out = emptyTree();
  let any = false;
  for (const key in merge) {
    const value = merge[key] as Node;
    const mark = has(del, key) ? del[key] : undefined;
    let next: Node | undefined = value;
    if (mark === true) next = undefined;
    else if (mark !== undefined && isTree(value)) next = withoutDeleted(value, mark);
    if (next !== undefined) {
      out[key] = next;
      any = true;
    }
  }
  return any ? out : undefined;
}

/**
 * Merges `b` onto `a` as merge trees. Where an object of `b` lands on a leaf of `a`, the leaf had
 * replaced whatever the target held there, so the combined mutation must delete that path first:
 * those paths are recorded in `deletes`.
 */
function combineMerge(a: Tree, b: Tree, deletes: DeleteTree): Tree {
  const out = copy(a);
  for (const key in b) {
    const value = b[key] as Node;
    const existing = has(out, key) ? out[key] : undefined;
    if (isTree(value) && existing !== undefined && !isTree(existing)) {
      deletes[key] = true;
      out[key] = value;
    } else if (isTree(value) && isTree(existing)) {
      const sub = Object.create(null) as DeleteTree;
      out[key] = combineMerge(existing, value, sub);
      for (const _ in sub) {
        deletes[key] = sub;
        break;
      }
    } else out[key] = value;
  }
  return out;
}

/**
 * One mutation equivalent to applying `a` then `b`, with one exception no single mutation can
 * express (docs/tree.md, "combine"): when `b` deletes, key by key, all of an object that `a` merged
 * at a path p that `a` does not delete with `true`, applying `a` then `b` leaves nothing at p if the
 * target held a leaf there; the combined mutation keeps that leaf (and is exact when p held an
 * object or nothing).
 */
export function combine(a: Mutation, b: Mutation): Mutation {
  const base = withoutDeleted(a.merge, b.delete) ?? emptyTree();
  const extra = Object.create(null) as DeleteTree;
  const merge = combineMerge(base, b.merge, extra);
  return { merge, delete: unionDelete(unionDelete(a.delete, b.delete), extra) };
}

/**
 * What a watcher of `path` sees of a mutation (contract section 4): the parts of `merge` and
 * `delete` at or below `path`, rooted at []; a delete or leaf merge above `path` becomes a delete
 * of `path`. Returns `null` when the mutation has no part at, below or above `path`.
 */
export function restrict(m: Mutation, path: Path): Mutation | null {
  if (path.length === 0) return isEmptyMutation(m) ? null : m;
  let merge: Node | undefined = m.merge;
  let del: DeleteTree | undefined = m.delete;
  let deletesPath = false;
  for (let i = 0; i < path.length; i++) {
    const key = path[i] as string;
    if (del !== undefined) {
      const mark: true | DeleteTree | undefined = has(del, key) ? del[key] : undefined;
      if (mark === true) {
        deletesPath = true;
        del = undefined;
      } else del = mark;
    }
    if (merge !== undefined) {
      const next: Node | undefined = isTree(merge) && has(merge, key) ? merge[key] : undefined;
      if (next !== undefined && !isTree(next) && i < path.length - 1) {
        deletesPath = true; // a leaf above the watched path replaces it
        merge = undefined;
      } else merge = next;
    }
  }
  if (!deletesPath && merge === undefined && del === undefined) return null;
  return {
    merge: merge === undefined ? emptyTree() : (inflate(path, merge) as Tree),
    delete: deletesPath
      ? (inflate(path, true) as DeleteTree)
      : del === undefined
        ? (Object.create(null) as DeleteTree)
        : (inflate(path, del) as DeleteTree),
  };
}

/** The mutation that a snapshot of `value` at `path` stands for (contract section 4). */
export function snapshotMutation(path: Path, value: Node | undefined): Mutation {
  return {
    merge: value === undefined ? emptyTree() : path.length === 0 ? (value as Tree) : (inflate(path, value) as Tree),
    delete: path.length === 0 ? (Object.create(null) as DeleteTree) : (inflate(path, true) as DeleteTree),
  };
}

export function equalNodes(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    if (a.length !== bb.length) return false;
    for (let i = 0; i < a.length; i++) if (!equalNodes(a[i], bb[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!has(b, k) || !equalNodes((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/** A mutation `m` such that `applyMutation(a, m)` equals `b`. */
export function diff(a: Tree, b: Tree): Mutation {
  const merge = emptyTree();
  const del = Object.create(null) as DeleteTree;
  for (const key in a) if (!has(b, key)) del[key] = true;
  for (const key in b) {
    const x = has(a, key) ? a[key] : undefined;
    const y = b[key] as Node;
    if (isTree(x) && isTree(y)) {
      const sub = diff(x, y);
      for (const _ in sub.merge) {
        merge[key] = sub.merge;
        break;
      }
      for (const _ in sub.delete) {
        del[key] = sub.delete;
        break;
      }
    } else if (!equalNodes(x, y)) merge[key] = y;
  }
  return { merge, delete: del };
}

/** Converts a normalized tree to plain JSON text-compatible objects (identity: trees are JSON). */
export function toJson(node: Node | undefined): Json {
  return node === undefined ? null : (node as Json);
}

/** Every leaf of a tree as `[path, leaf]`, depth first in byte order of keys. */
export function* leaves(node: Node, path: string[] = []): Generator<[Path, Leaf]> {
  if (!isTree(node)) {
    yield [path, node];
    return;
  }
  for (const key of sortedKeys(node)) yield* leaves(node[key] as Node, [...path, key]);
}

/** Size of a value's JSON in bytes of UTF-8; throws PAYLOAD_TOO_LARGE over `maxMutationBytes`. */
export function checkMutationSize(input: unknown, limits: Limits = DEFAULT_LIMITS): number {
  const bytes = utf8Length(JSON.stringify(input) ?? "");
  if (bytes > limits.maxMutationBytes) {
    throw new KoraError(
      "PAYLOAD_TOO_LARGE",
      `mutation is ${bytes} bytes of JSON; at most ${limits.maxMutationBytes} bytes are accepted (split it into several mutations)`,
    );
  }
  return bytes;
}

/**
 * The ops of `write` missing from `committed` (the mutation as committed for it, docs/conflicts.md):
 * merged leaves whose committed value differs (they lost to later writes, or an interceptor
 * rewrote them) and deletes not committed whole (a newer leaf under them survived). The client
 * reports them to `onConflict`; the server finds the winners of a replayed write's parts with it.
 */
export function lostOps(write: Mutation, committed: Mutation): { op: "set" | "delete"; path: Path }[] {
  const lost: { op: "set" | "delete"; path: Path }[] = [];
  const visitLeaves = (t: Tree, path: string[]) => {
    for (const k in t) {
      const v = t[k] as Node;
      if (isTree(v)) visitLeaves(v, [...path, k]);
      // equalNodes, not JSON text: a replay's committed mutation comes back from JSONB, which
      // reorders the keys of objects inside arrays.
      else if (!equalNodes(getNode(committed.merge, [...path, k]), v)) lost.push({ op: "set", path: [...path, k] });
    }
  };
  const marks = (d: DeleteTree, path: string[]) => {
    for (const k in d) {
      const v = d[k] as true | DeleteTree;
      if (v !== true) {
        marks(v, [...path, k]);
        continue;
      }
      // Deleted as a whole (here or at an ancestor), or only its older parts: lost in part.
      const at = [...path, k];
      let whole = false;
      for (let i = 1; i <= at.length && !whole; i++) whole = getNode(committed.delete as Tree, at.slice(0, i)) === true;
      if (!whole) lost.push({ op: "delete", path: at });
    }
  };
  visitLeaves(write.merge, []);
  marks(write.delete, []);
  return lost;
}
