/**
 * The watch fast path: an envelop plugin that answers plain `watch` subscriptions without
 * running graphql-js execution for every event of every subscriber. Profiles of a fan-out to
 * 1,000 watchers showed the per-subscriber, per-event execution (graphql-tools' executor: context
 * per event, field collection, completion) and its garbage as the largest part of the server's
 * CPU after the socket writes (docs/bench.md, "Where the CPU goes").
 *
 * A subscription qualifies when its document holds only operations (no fragments), the chosen one
 * is a subscription of a single `watch` field (an alias is fine) without directives, selecting
 * only scalar fields of `WatchEvent` (`version`, `snapshot`, `merge`, `delete`, `value`,
 * `__typename`; aliases fine, no directives, no duplicate response keys), and its variables and
 * arguments coerce. Its events are then projected straight onto the selection: the same values,
 * in the same order, as graphql-js would produce (test/watch.fastpath.test.ts compares both).
 *
 * Everything else, and every setup failure (a bad path or `since`, FORBIDDEN), goes through the
 * ordinary subscribe function, which answers with the usual errors: opening a watch that failed
 * has no side effect, so running it again there is safe. The plugin only replaces the subscribe
 * function, so every other plugin's hooks around it (result processing, masking) still run.
 * Read authorization is untouched: each subscriber's events still pass through the gateway's
 * filter for its caller (core/gateway.ts) before they are projected.
 */
import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type FieldNode,
  type GraphQLField,
  GraphQLError,
  type GraphQLSchema,
  Kind,
  type OperationDefinitionNode,
  getArgumentValues,
  getVariableValues,
} from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Watch, WatchEvent } from "../core/watch.ts";
import type { KoraContext } from "../resolvers/context.ts";
import { openWatch } from "../resolvers/watch.ts";

/** How each selectable field of `WatchEvent` is computed; must match schema/index.ts. */
const PROJECT: Record<string, (e: WatchEvent) => unknown> = {
  version: (e) => String(e.version),
  snapshot: (e) => e.snapshot,
  merge: (e) => e.mutation.merge,
  delete: (e) => e.mutation.delete,
  value: (e) => e.value ?? null,
  __typename: () => "WatchEvent",
};

interface Plan {
  operation: OperationDefinitionNode;
  field: FieldNode;
  /** The response key of the `watch` field. */
  key: string;
  /** [response key, field name] in selection order. */
  selection: [string, string][];
  trackValue: boolean;
}

// Yoga's parser cache hands out one DocumentNode per distinct document text, so plans are shared.
const plans = new WeakMap<DocumentNode, Map<string, Plan | null>>();

function planOf(document: DocumentNode, operationName: string | null | undefined): Plan | null {
  let byName = plans.get(document);
  if (!byName) {
    byName = new Map();
    plans.set(document, byName);
  }
  const name = operationName ?? "";
  let plan = byName.get(name);
  if (plan === undefined) {
    plan = makePlan(document, operationName);
    byName.set(name, plan);
  }
  return plan;
}

function makePlan(document: DocumentNode, operationName: string | null | undefined): Plan | null {
  const operations: OperationDefinitionNode[] = [];
  for (const d of document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) return null;
    operations.push(d);
  }
  const operation = operationName
    ? operations.find((o) => o.name?.value === operationName)
    : operations.length === 1
      ? operations[0]
      : undefined;
  if (operation?.operation !== "subscription" || operation.directives?.length) return null;
  const [field, ...more] = operation.selectionSet.selections;
  if (
    !field ||
    more.length > 0 ||
    field.kind !== Kind.FIELD ||
    field.name.value !== "watch" ||
    field.directives?.length
  )
    return null;
  if (!field.selectionSet) return null;
  const selection: [string, string][] = [];
  const keys = new Set<string>();
  for (const s of field.selectionSet.selections) {
    if (s.kind !== Kind.FIELD || s.directives?.length || s.arguments?.length || s.selectionSet)
      return null;
    if (!Object.hasOwn(PROJECT, s.name.value)) return null;
    const key = s.alias?.value ?? s.name.value;
    if (keys.has(key)) return null; // graphql-js merges these; leave that to it
    keys.add(key);
    selection.push([key, s.name.value]);
  }
  return {
    operation,
    field,
    key: field.alias?.value ?? "watch",
    selection,
    trackValue: selection.some(([, name]) => name === "value"),
  };
}

/** The `watch` arguments, coerced as graphql-js would; undefined when coercion fails. */
function argumentsOf(
  plan: Plan,
  schema: GraphQLSchema,
  variables: ExecutionArgs["variableValues"],
) {
  const def = schema.getSubscriptionType()?.getFields().watch as
    | GraphQLField<unknown, unknown>
    | undefined;
  if (!def) return undefined;
  const coerced = getVariableValues(
    schema,
    plan.operation.variableDefinitions ?? [],
    variables ?? {},
  );
  if (coerced.errors) return undefined;
  try {
    return getArgumentValues(def, plan.field, coerced.coerced) as {
      path: readonly string[];
      since?: string | null;
    };
  } catch {
    return undefined;
  }
}

/**
 * Results shared by every subscriber that gets the same event through the same plan. The watch
 * hub hands one restricted mutation object to all watches of a path (core/watch.ts), and a
 * watch whose events the read rules filter gets a new object per event from the filter
 * (core/gateway.ts): so the same mutation object means the same path and the same read-auth
 * class, and the projection, the read bound's count and the serialization (server/wsserver.ts,
 * `framed`) are done once per group instead of once per subscriber. Plans selecting `value`
 * (a copy of the subtree per watch) are not shared.
 */
const shared = new WeakMap<
  object,
  Map<Plan, { version: WatchEvent["version"]; snapshot: boolean; result: ExecutionResult }>
>();

/** Results that may go to many subscribers (see `shared`): never to be modified. */
const sharedResults = new WeakSet<ExecutionResult>();

/** Whether `result` is one event's result shared between subscribers (server/wsserver.ts frames it once). */
export function isSharedResult(result: unknown): boolean {
  return (
    typeof result === "object" && result !== null && sharedResults.has(result as ExecutionResult)
  );
}

/** The projection of a plan's events onto its selection, shared where `shared` allows. */
function projector(plan: Plan): (event: WatchEvent) => ExecutionResult {
  const projectOne = (event: WatchEvent): ExecutionResult => {
    const out: Record<string, unknown> = {};
    for (const [key, name] of plan.selection)
      out[key] = (PROJECT[name] as (e: WatchEvent) => unknown)(event);
    return { data: { [plan.key]: out } };
  };
  const project = (event: WatchEvent): ExecutionResult => {
    if (plan.trackValue) return projectOne(event);
    let byPlan = shared.get(event.mutation);
    if (!byPlan) {
      byPlan = new Map();
      shared.set(event.mutation, byPlan);
    }
    const known = byPlan.get(plan);
    if (known && known.version === event.version && known.snapshot === event.snapshot)
      return known.result;
    const result = projectOne(event);
    byPlan.set(plan, { version: event.version, snapshot: event.snapshot, result });
    sharedResults.add(result);
    return result;
  };
  return project;
}

/** An error of the watch's stream, as graphql-tools' executor reports one. */
function streamError(error: unknown, plan: Plan): GraphQLError {
  const e = error as Error;
  return new GraphQLError(e.message, { originalError: e, nodes: [plan.operation] });
}

function results(watch: Watch, plan: Plan): AsyncIterableIterator<ExecutionResult> {
  const project = projector(plan);
  const iterator: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      let r: IteratorResult<WatchEvent>;
      try {
        r = await watch.next();
      } catch (error) {
        throw streamError(error, plan);
      }
      return r.done ? { done: true, value: undefined } : { done: false, value: project(r.value) };
    },
    async return() {
      watch.close();
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      watch.close();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

/**
 * A graphql-ws operation's own socket, for direct delivery (server/http.ts puts it in the
 * context of each graphql-ws operation; SSE has none and takes `results`).
 */
export interface DirectSocket {
  /** Sends `result` as this operation's `next` frame; resolves at once under the socket's high-water mark, else once written; never rejects. */
  next(result: ExecutionResult): Promise<void>;
  /** Whether a frame would go out now without waiting. */
  ready(): boolean;
  /** Counts one delivery in the metrics; `resync` for a snapshot after the first event. */
  delivered(resync: boolean): void;
  /** The read bound's refusal of `result` (server/readbound.ts), if it is over the bound. */
  refusal(result: ExecutionResult): GraphQLError | undefined;
}

/**
 * Direct delivery over graphql-ws. Events go to the socket as frames from here, not through the
 * iterator graphql-ws pulls: a change that finds the watch caught up is framed and written from
 * the watch hub's dispatch (core/watch.ts `direct`), with no promise per watcher; what queued
 * (the snapshot, a catch-up, changes while the socket was over its high-water mark) is pulled by
 * one loop here and written in order. The iterator handed back to graphql-ws (and envelop's
 * hooks around it) carries only the end: completion or the stream's error (UNAUTHENTICATED,
 * UNAVAILABLE). Metrics and the read bound, which see only that iterator, are applied here for
 * each event (`DirectSocket`); an event over the read bound is sent as its refusal, and the
 * watch goes on, as on the other paths.
 */
function directResults(
  watch: DirectWatch,
  plan: Plan,
  socket: DirectSocket,
): AsyncIterableIterator<ExecutionResult> {
  const project = projector(plan);
  type Item = { value: ExecutionResult } | { done: true } | { error: unknown };
  const control: Item[] = [];
  let waiter:
    | { resolve: (r: IteratorResult<ExecutionResult>) => void; reject: (e: unknown) => void }
    | undefined;
  let over = false;
  let events = 0;
  const hand = (w: NonNullable<typeof waiter>, item: Item) => {
    if ("error" in item) w.reject(item.error);
    else if ("done" in item) w.resolve({ done: true, value: undefined });
    else w.resolve({ done: false, value: item.value });
  };
  const post = (...items: Item[]) => {
    control.push(...items);
    const w = waiter;
    if (!w || control.length === 0) return;
    waiter = undefined;
    hand(w, control.shift() as Item);
  };
  const finish = (...items: Item[]) => {
    if (over) return;
    over = true;
    watch.close();
    post(...items);
  };
  const deliver = (event: WatchEvent): Promise<void> | undefined => {
    if (over) return undefined;
    const result = project(event);
    const refusal = socket.refusal(result);
    // Over the read bound: the event is that error, and the watch goes on, as on every other
    // path (server/readbound.ts replaces such a result the same way for SSE and graphql-js).
    if (refusal) return socket.next({ data: null, errors: [refusal] });
    socket.delivered(events++ > 0 && event.snapshot);
    return socket.next(result);
  };
  // `deliver` runs inside the hub's dispatch to every watcher of the change: whatever goes wrong
  // here ends this watch with an error and never reaches the hub (the others still get it).
  watch.direct((event) => {
    try {
      void deliver(event);
    } catch (error) {
      finish({ error: streamError(error, plan) });
    }
  }, socket.ready);
  void (async () => {
    try {
      for (;;) {
        const r = await watch.next();
        if (r.done || over) break;
        await deliver(r.value);
      }
      finish({ done: true });
    } catch (error) {
      finish({ error: streamError(error, plan) });
    }
  })();
  const iterator: AsyncIterableIterator<ExecutionResult> = {
    next() {
      const item = control.shift();
      return new Promise((resolve, reject) => {
        if (item) hand({ resolve, reject }, item);
        else waiter = { resolve, reject };
      });
    },
    // graphql-ws calls return() with a next() still pending (the client stopped the watch, or
    // its socket closed): that next() ends as done, as the iterator protocol says.
    async return() {
      finish({ done: true });
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      finish({ done: true });
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

/** A watch the hub serves directly (no read rules, no expiry), which can deliver synchronously. */
type DirectWatch = Watch & {
  direct(deliver: (event: WatchEvent) => void, ready: () => boolean): void;
};

function directable(watch: Watch): watch is DirectWatch {
  return typeof (watch as { direct?: unknown }).direct === "function";
}

/** How many subscriptions the fast path has served in this process, and how many directly (tests check both engage). */
export const watchFastPathStats = { served: 0, direct: 0 };

export function useWatchFastPath(): Plugin<KoraContext> {
  return {
    onSubscribe({ args, subscribeFn, setSubscribeFn }) {
      const plan = planOf(args.document, args.operationName);
      if (!plan) return;
      const watchArgs = argumentsOf(plan, args.schema, args.variableValues);
      if (!watchArgs) return;
      setSubscribeFn(async (subscribeArgs) => {
        let watch: Watch;
        try {
          watch = await openWatch(
            watchArgs,
            subscribeArgs.contextValue as KoraContext,
            plan.trackValue,
          );
        } catch {
          return subscribeFn(subscribeArgs); // the ordinary path answers with the usual errors
        }
        watchFastPathStats.served++;
        const socket = (subscribeArgs.contextValue as { koraDirect?: DirectSocket }).koraDirect;
        if (socket && directable(watch)) {
          watchFastPathStats.direct++;
          return directResults(watch, plan, socket);
        }
        return results(watch, plan);
      });
    },
  };
}
