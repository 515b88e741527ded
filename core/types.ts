/**
 * The shapes of the tree. Semantics live in docs/tree.md (and ../shared/CONTRACT.md sections 1-2).
 */

/** A JSON value as it arrives from a client. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** A leaf: any JSON value that is not an object. Arrays are opaque leaves and may hold null. */
export type Leaf = string | number | boolean | Json[];

/**
 * A normalized tree node: never empty, never holding `null` outside arrays. Objects built by
 * core/ have a null prototype so that keys like `__proto__` and `constructor` are plain data.
 */
export type Tree = { [key: string]: Node };
export type Node = Leaf | Tree;

/** A list of keys from the root. `[]` is the root. */
export type Path = readonly string[];

/** A tree whose leaves are `true`: each marks a path to remove with its subtree. */
export type DeleteTree = { [key: string]: true | DeleteTree };

/**
 * A normalized mutation, both trees rooted at `[]`. Deletes apply before merges.
 * Normalized means: keys valid, no nulls, no empty objects in `merge`, `delete` leaves are `true`.
 */
export interface Mutation {
  merge: Tree;
  delete: DeleteTree;
}

/**
 * A version: a decimal integer, strictly increasing in commit order. Held as a JS number inside
 * Kora (exact up to 2^53, i.e. far beyond any realistic number of commits) and exposed to clients
 * as a decimal string.
 */
export type Version = number;

/** A committed mutation with its version: one entry of the change log. */
export interface Change {
  version: Version;
  mutation: Mutation;
}

/** Limits on input. Defaults in `DEFAULT_LIMITS`; all configurable. */
export interface Limits {
  /** Longest key, in bytes of UTF-8. Default 768. */
  maxKeyBytes: number;
  /** Most keys in the full path of any leaf (path keys included). Default 32. */
  maxDepth: number;
  /** Largest mutation, in bytes of its JSON. Default 4 MiB. */
  maxMutationBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxKeyBytes: 768,
  maxDepth: 32,
  maxMutationBytes: 4 * 1024 * 1024,
};

/** Selection among the direct children of a path, in byte order of keys (contract section 3). */
export interface ReadOptions {
  /** Inclusive lower bound on child keys. */
  min?: string | undefined;
  /** Exclusive upper bound on child keys. */
  max?: string | undefined;
  /** Most children to return (>= 1). */
  limit?: number | undefined;
  /** Take children from the end of the range instead of the start. */
  reverse?: boolean | undefined;
}

/** What a node is, as a keys-only listing tells it: an object, or a leaf's JSON type. */
export type NodeType = "object" | "string" | "number" | "boolean" | "array";

/** One child in a keys-only listing (`Store.keys`): what it is, never what is below it. */
export interface ChildSummary {
  key: string;
  type: NodeType;
  /** A leaf's value, when its JSON text is at most `valueBytes` (absent for objects). */
  value?: Leaf | undefined;
  /** A leaf's size in bytes of JSON text (absent for objects). */
  bytes?: number | undefined;
}

export interface KeysOptions {
  /** Children whose keys come after this one (exclusive, in byte order); default from the first. */
  after?: string | undefined;
  /** Most children to list (>= 1). */
  limit: number;
  /** Largest leaf (bytes of JSON) whose value is included. Default 1024; 0 includes none. */
  valueBytes?: number | undefined;
}

export interface KeysResult {
  /** The version of the last mutation the listing includes (one snapshot). */
  version: Version;
  /** What is stored at the path: undefined when nothing is. */
  node: NodeType | undefined;
  /** The children after `after`, in byte order of keys, at most `limit`; empty for a leaf. */
  children: ChildSummary[];
  /** True when more children follow the last one listed. */
  more: boolean;
}
