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

function results(watch: Watch, plan: Plan): AsyncIterableIterator<ExecutionResult> {
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
  const iterator: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      let r: IteratorResult<WatchEvent>;
      try {
        r = await watch.next();
      } catch (error) {
        // As graphql-tools' executor does with an error of the source stream.
        const e = error as Error;
        throw new GraphQLError(e.message, { originalError: e, nodes: [plan.operation] });
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

/** How many subscriptions the fast path has served in this process (tests check it engages). */
export const watchFastPathStats = { served: 0 };

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
        return results(watch, plan);
      });
    },
  };
}
