/**
 * The GraphQL schema of the contract (section 3), built code-first with Pothos. Field and type
 * names are fixed by the contract; `schema.graphql` is this schema printed (npm run schema:print)
 * and a test fails when the two drift.
 */
import { type GraphQLSchema, printSchema } from "graphql";
import type { KeysPage } from "../core/gateway.ts";
import type { LostPart } from "../core/lww.ts";
import type { ChildSummary } from "../core/types.ts";
import type { WatchEvent } from "../core/watch.ts";
import type { MutationOutcome } from "../resolvers/mutation.ts";
import { resolveDelete, resolveMerge, resolveMutate } from "../resolvers/mutation.ts";
import { resolveKeys } from "../resolvers/keys.ts";
import { resolvePath } from "../resolvers/query.ts";
import { subscribeWatch } from "../resolvers/watch.ts";
import { builder } from "./builder.ts";

const LostPartRef = builder.objectRef<LostPart>("LostPart").implement({
  description:
    "A part of a write that lost to a later write under per-leaf last writer wins (docs/conflicts.md): a merged leaf, or a delete that a newer leaf under it survived.",
  fields: (t) => ({
    path: t.stringList({ description: "The path of the part: the merged leaf, or the deleted path.", resolve: (p) => [...p.path] }),
    winnerTs: t.string({
      description:
        "The hybrid-logical-clock stamp of the newest write that beat this part (a leaf's write, or a delete's: tombstones count), later than the write's `ts`.",
      resolve: (p) => p.winnerTs,
    }),
  }),
});

const MutationResult = builder.objectRef<MutationOutcome>("MutationResult").implement({
  fields: (t) => ({
    version: t.string({ resolve: (r) => String(r.version) }),
    merge: t.field({
      type: "JSONObject",
      description: "The mutation as committed, after interceptors, rooted at [].",
      resolve: (r) => r.mutation.merge,
    }),
    delete: t.field({ type: "JSONObject", resolve: (r) => r.mutation.delete }),
    ts: t.string({
      nullable: true,
      description:
        "The hybrid-logical-clock timestamp the write was recorded with: the `ts` argument, or the server's stamp when it was absent or too far ahead (docs/conflicts.md).",
      resolve: (r) => r.ts ?? null,
    }),
    lost: t.field({
      type: [LostPartRef],
      description:
        "The parts of the write that lost to later writes (per-leaf last writer wins, decided before interceptors), each with the winner's stamp; empty when it won whole. Not in `merge`/`delete`.",
      resolve: (r) => r.lost ?? [],
    }),
  }),
});

const WatchEventRef = builder.objectRef<WatchEvent>("WatchEvent").implement({
  fields: (t) => ({
    version: t.string({ resolve: (e) => String(e.version) }),
    snapshot: t.boolean({
      description: "True when this event replaces the client's copy of the watched subtree.",
      resolve: (e) => e.snapshot,
    }),
    merge: t.field({
      type: "JSONObject",
      description: "The change, rooted at [] and restricted to the watched subtree.",
      resolve: (e) => e.mutation.merge,
    }),
    delete: t.field({ type: "JSONObject", resolve: (e) => e.mutation.delete }),
    value: t.field({
      type: "JSON",
      nullable: true,
      description:
        "The whole value at the watched path after this event (null when absent). Costs a read or a cached copy: clients that keep their own replica do not select it.",
      resolve: (e) => e.value ?? null,
    }),
  }),
});

const NodeTypeRef = builder.enumType("NodeType", {
  description: "What a node is: an object, or the JSON type of a leaf.",
  values: {
    OBJECT: { value: "object" },
    STRING: { value: "string" },
    NUMBER: { value: "number" },
    BOOLEAN: { value: "boolean" },
    ARRAY: { value: "array" },
  } as const,
});

const ChildKeyRef = builder.objectRef<ChildSummary>("ChildKey").implement({
  description: "A child in a keys listing: its key and what it is, never what is below it.",
  fields: (t) => ({
    key: t.string({ resolve: (c) => c.key }),
    type: t.field({ type: NodeTypeRef, resolve: (c) => c.type }),
    value: t.field({
      type: "JSON",
      nullable: true,
      description: "A leaf's value when its JSON is at most 1 KiB; null for objects and larger leaves (read them with `path`).",
      resolve: (c) => c.value ?? null,
    }),
    size: t.int({
      nullable: true,
      description: "A leaf's size in bytes of JSON text (as PostgreSQL prints it); null for objects.",
      resolve: (c) => c.bytes ?? null,
    }),
  }),
});

const KeysPageRef = builder.objectRef<KeysPage>("KeysPage").implement({
  fields: (t) => ({
    version: t.string({
      description: "The version the listing was read at: a `watch` with `since` set to it misses no later change.",
      resolve: (p) => String(p.version),
    }),
    type: t.field({ type: NodeTypeRef, description: "What is at `path`: OBJECT, or a leaf's type (a leaf has no children).", resolve: (p) => p.type }),
    children: t.field({ type: [ChildKeyRef], description: "The children, in byte order of keys.", resolve: (p) => p.children }),
    next: t.string({
      nullable: true,
      description: "The last child's key when more children follow it (pass it as `after`); null at the end.",
      resolve: (p) => p.next ?? null,
    }),
  }),
});

builder.queryType({
  fields: (t) => ({
    path: t.field({
      type: "JSON",
      nullable: true,
      description:
        "The value at `path` (object or leaf), or null when nothing is stored there. min/max/limit/reverse select among the direct children of `path`, in byte order of keys: min inclusive, max exclusive, limit (>= 1) counts children, reverse takes them from the end. On a leaf they are ignored; a selection with no children is null.",
      args: {
        path: t.arg.stringList({ required: true }),
        min: t.arg.string(),
        max: t.arg.string(),
        limit: t.arg.int(),
        reverse: t.arg.boolean(),
      },
      resolve: (_root, args, ctx) => resolvePath(args, ctx),
    }),
    keys: t.field({
      type: KeysPageRef,
      nullable: true,
      description:
        "The direct children of `path`, keys only: each child's key and type (and a small leaf's value), without reading below them. Up to `limit` (1 to 1000, default 100) children after `after` (exclusive), in byte order of keys; `next` continues. Read rules apply as to `path`: a child the caller may not see is not listed (and `limit` counts the listed ones). Null when nothing readable is selected, as `path`; a leaf at `path` is a page of its type with no children.",
      args: {
        path: t.arg.stringList({ required: true }),
        after: t.arg.string(),
        limit: t.arg.int(),
      },
      resolve: (_root, args, ctx) => resolveKeys(args, ctx),
    }),
  }),
});

/**
 * Optional arguments of every write for offline clients (docs/conflicts.md): `ts`, the write's
 * hybrid-logical-clock timestamp (absent: the server stamps it), and `writeId`, an id unique to
 * the write (a retry with the same id returns the first result instead of writing again).
 * Left without descriptions so each signature prints on one line, as the contract writes it.
 */
function stampArgs<T extends { arg: { string: () => unknown } }>(t: T) {
  return {
    ts: t.arg.string() as ReturnType<T["arg"]["string"]>,
    writeId: t.arg.string() as ReturnType<T["arg"]["string"]>,
  };
}

builder.mutationType({
  fields: (t) => ({
    merge: t.field({
      type: MutationResult,
      description: "Merge `value` at `path`. A leaf value replaces what is at `path`.",
      args: {
        path: t.arg.stringList({ required: true, defaultValue: [] }),
        value: t.arg({ type: "JSON", required: true }),
        ...stampArgs(t),
      },
      resolve: (_root, args, ctx) => resolveMerge({ ...args, value: args.value }, ctx),
    }),
    delete: t.field({
      type: MutationResult,
      description: "Remove `path` and everything under it.",
      args: { path: t.arg.stringList({ required: true }), ...stampArgs(t) },
      resolve: (_root, args, ctx) => resolveDelete(args, ctx),
    }),
    mutate: t.field({
      type: MutationResult,
      description: "Apply a whole mutation, rooted at [], atomically.",
      args: { merge: t.arg({ type: "JSONObject" }), delete: t.arg({ type: "JSONObject" }), ...stampArgs(t) },
      resolve: (_root, args, ctx) => resolveMutate(args, ctx),
    }),
  }),
});

builder.subscriptionType({
  fields: (t) => ({
    watch: t.field({
      type: WatchEventRef,
      description: "Changes under `path`: a snapshot first, then every change, in version order. See docs/watch.md.",
      args: { path: t.arg.stringList({ required: true }), since: t.arg.string() },
      subscribe: (_root, args, ctx, info) => subscribeWatch(args, ctx, info),
      resolve: (event) => event,
    }),
  }),
});

let schema: GraphQLSchema | undefined;

/** The schema; built once (Pothos builders are single-use). */
export function koraSchema(): GraphQLSchema {
  schema ??= builder.toSchema({ sortSchema: false });
  return schema;
}

/** The SDL committed as schema.graphql. */
export function printKoraSchema(): string {
  return `${printSchema(koraSchema())}\n`;
}
