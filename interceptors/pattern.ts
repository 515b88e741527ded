/**
 * Path patterns (docs/interceptors.md, "Patterns"): literal keys, `$name` captures one key, `*`
 * any one key, `**` (last only) any rest. Matching is incremental, key by key, so walking a tree
 * or a mutation along a pattern costs the part of the tree the pattern can reach.
 */
import { badInput, showPath } from "../core/errors.ts";
import { has, isTree } from "../core/tree.ts";
import type { Mutation, Node, Path } from "../core/types.ts";
import type { Match, Pattern } from "./types.ts";

type Step = { kind: "literal"; key: string } | { kind: "capture"; name: string } | { kind: "any" } | { kind: "rest" };

export interface CompiledPattern {
  readonly source: Pattern;
  readonly steps: readonly Step[];
}

/** Parses a pattern, failing with a message that names it. */
export function compilePattern(pattern: Pattern): CompiledPattern {
  if (!Array.isArray(pattern)) throw badInput(`a pattern is a list of keys, e.g. ["user:info", "$uid"]; got ${JSON.stringify(pattern)}`);
  const steps: Step[] = [];
  const names = new Set<string>();
  pattern.forEach((key, i) => {
    if (typeof key !== "string" || key.length === 0) {
      throw badInput(`pattern ${showPath(pattern)} holds an empty or non-string key at position ${i}`);
    }
    if (key === "**") {
      if (i !== pattern.length - 1) throw badInput(`pattern ${showPath(pattern)}: "**" may only be the last key`);
      steps.push({ kind: "rest" });
    } else if (key === "*") steps.push({ kind: "any" });
    else if (key.startsWith("$")) {
      const name = key.slice(1);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        throw badInput(`pattern ${showPath(pattern)}: capture ${JSON.stringify(key)} must be $ followed by a name ([A-Za-z_][A-Za-z0-9_]*)`);
      }
      if (names.has(name)) throw badInput(`pattern ${showPath(pattern)} captures $${name} twice`);
      names.add(name);
      steps.push({ kind: "capture", name });
    } else steps.push({ kind: "literal", key: key.startsWith("\\") ? key.slice(1) : key });
  });
  return { source: pattern, steps };
}

/** A position in a pattern while walking down a path. */
export interface Cursor {
  index: number;
  captures: Record<string, string>;
}

export const START: Cursor = Object.freeze({ index: 0, captures: Object.freeze({}) as Record<string, string> });

/** The cursor after one more key, or undefined when the pattern cannot match below. */
export function step(p: CompiledPattern, cursor: Cursor, key: string): Cursor | undefined {
  const s = p.steps[cursor.index];
  if (!s) return undefined;
  switch (s.kind) {
    case "rest":
      return cursor;
    case "any":
      return { index: cursor.index + 1, captures: cursor.captures };
    case "literal":
      return s.key === key ? { index: cursor.index + 1, captures: cursor.captures } : undefined;
    case "capture":
      return { index: cursor.index + 1, captures: { ...cursor.captures, [s.name]: key } };
  }
}

/** Whether the pattern matches the path the cursor stands at. */
export function complete(p: CompiledPattern, cursor: Cursor): boolean {
  return cursor.index === p.steps.length || p.steps[cursor.index]?.kind === "rest";
}

/** Whether the pattern may match some path strictly below the cursor. */
export function deeper(p: CompiledPattern, cursor: Cursor): boolean {
  return cursor.index < p.steps.length;
}

/** The only key the next step accepts, when it is a literal. */
function literalNext(p: CompiledPattern, cursor: Cursor): string | undefined {
  const s = p.steps[cursor.index];
  return s?.kind === "literal" ? s.key : undefined;
}

/** Walks a whole path; the captures when the pattern matches it exactly. */
export function matchPath(p: CompiledPattern, path: Path): Record<string, string> | undefined {
  let cursor: Cursor | undefined = START;
  for (const key of path) {
    cursor = step(p, cursor, key);
    if (!cursor) return undefined;
  }
  return complete(p, cursor) ? cursor.captures : undefined;
}

/**
 * The concrete paths where a pattern matches the shape of a mutation: paths it merges or deletes
 * at, below, or (where a delete or a leaf replaces a whole subtree) inside what it replaces.
 * Inside a replaced subtree, wildcard keys are enumerated from `keysAt` (committed data). A
 * pattern ending in `**` matches once, at its prefix.
 */
export async function matchMutation(
  p: CompiledPattern,
  m: Mutation,
  keysAt: (path: Path) => Promise<string[]>,
): Promise<Match[]> {
  const out: Match[] = [];
  const walk = async (cursor: Cursor, path: string[], merge: Node | undefined, del: unknown, replaced: boolean) => {
    if (complete(p, cursor)) {
      out.push({ path, captures: cursor.captures });
      return;
    }
    const mergeTree = isTree(merge) ? merge : undefined;
    const delTree = isTree(del) ? (del as Record<string, unknown>) : undefined;
    let keys: Iterable<string>;
    const literal = literalNext(p, cursor);
    if (literal !== undefined) keys = [literal];
    else {
      const set = new Set<string>();
      if (mergeTree) for (const k in mergeTree) set.add(k);
      if (delTree) for (const k in delTree) set.add(k);
      if (replaced) for (const k of await keysAt(path)) set.add(k);
      keys = set;
    }
    for (const key of keys) {
      const mv = mergeTree && has(mergeTree, key) ? mergeTree[key] : undefined;
      const dv = delTree && has(delTree, key) ? delTree[key] : undefined;
      if (!replaced && mv === undefined && dv === undefined) continue;
      const next = step(p, cursor, key);
      if (!next) continue;
      const childReplaced = replaced || dv === true || (mv !== undefined && !isTree(mv));
      await walk(next, [...path, key], mv, dv, childReplaced);
    }
  };
  await walk(START, [], m.merge, m.delete, false);
  return out;
}

/** Keys of a node (none for leaves and absent nodes). */
export function keysOf(node: Node | undefined): string[] {
  return isTree(node) ? Object.keys(node) : [];
}

/** Normalizes the `path` option of an interceptor to a list of compiled patterns. */
export function compilePatterns(path: Pattern | readonly Pattern[] | undefined): CompiledPattern[] {
  if (path === undefined) return [compilePattern(["**"])];
  if (path.length > 0 && Array.isArray(path[0])) return (path as readonly Pattern[]).map(compilePattern);
  if (path.length === 0) return [compilePattern([])];
  return [compilePattern(path as Pattern)];
}
