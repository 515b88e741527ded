/**
 * The public interceptor API: server-side logic every client shares. Semantics, ordering and
 * examples live in docs/interceptors.md; this file holds the types and their contracts.
 */
import { type Caller, INTERNAL_CALLER } from "../core/gateway.ts";
import type { Mutation, Node, Path, ReadOptions, Version } from "../core/types.ts";

/**
 * A path pattern: a list of pattern keys. A literal key matches itself; `"$name"` matches any
 * one key and captures it as `name`; `"*"` matches any one key; `"**"` (last only) matches any
 * rest, zero keys included. A literal key that starts with `$` or is `*`/`**` is written with a
 * leading backslash: `"\\$ref"`.
 */
export type Pattern = readonly string[];

/** The claims of the caller's verified token, or `null` for anonymous callers. */
export type Auth = Readonly<Record<string, unknown>> | null;

/** Who is asking (the gateway's `Caller`): built once per HTTP request or WebSocket connection. */
export type RequestContext = Caller;

/** The context of server-side code: internal, anonymous. */
export const INTERNAL: RequestContext = INTERNAL_CALLER;

/** What a match of a pattern found. */
export interface Match {
  /** The concrete path the pattern matched. */
  path: Path;
  /** `$name` keys of the pattern and the keys they matched. */
  captures: Readonly<Record<string, string>>;
}

/** The argument of `beforeMutation` and `effect`. */
export interface MutationHookArgs extends Match {
  /** The part of `mutation` at, below or above `path` (as a watcher of `path` would see it). */
  part: Mutation;
  /** The whole mutation so far: the incoming one combined with every addition made yet. */
  mutation: Mutation;
  auth: Auth;
  internal: boolean;
  /** Reads committed data (inside the write transaction) at `at`, default `path`. */
  data(at?: Path): Promise<Node | undefined>;
  /** Reads the data as it would be after `mutation` is applied, at `at`, default `path`. */
  newData(at?: Path): Promise<Node | undefined>;
  /** Milliseconds since the epoch, the same for every hook of one mutation. */
  now: number;
}

/**
 * An addition returned by `beforeMutation`: `{ merge?, delete? }`, both rooted at `[]`, in the
 * same shape as the `mutate` arguments. It is normalized (keys checked, `null` rejected).
 */
export interface MutationInput {
  merge?: unknown;
  delete?: unknown;
}

/** A side-effect task declared by `effect`; `payload` must be JSON. */
export interface EffectTask {
  payload: unknown;
}

export interface EffectContext {
  /** The version of the mutation that recorded the task. */
  version: Version;
  /** 1 on the first run. */
  attempt: number;
  /** Writes through the whole interceptor pipeline as an internal caller. */
  commit(mutation: MutationInput): Promise<{ version: Version }>;
}

export interface AfterMutationArgs extends Match {
  part: Mutation;
  mutation: Mutation;
  version: Version;
  auth: Auth;
  internal: boolean;
}

/** Why a read is checked. */
export type ReadKind = "query" | "watch" | "event";

export interface ReadHookArgs extends Match {
  /** The path the client asked for (the query's or the watch's). */
  target: Path;
  kind: ReadKind;
  /**
   * True when the data delivered at `path` is a leaf value (nothing below it is delivered), so a
   * hook that would only allow deeper paths can say `false` here.
   */
  leaf: boolean;
  auth: Auth;
  internal: boolean;
  /** Reads committed data at `at`, default `path` (current data, not as of an event). */
  data(at?: Path): Promise<Node | undefined>;
  now: number;
}

/**
 * A read verdict: `true` grants the whole subtree at the match (this interceptor checks nothing
 * below it), `false` forbids it, `undefined` has no opinion here (deeper matches still checked;
 * a path no hook of an interceptor forbids is allowed by it).
 */
export type ReadVerdict = boolean | undefined;

export interface ResolveQueryArgs extends Match {
  options: ReadOptions | undefined;
  auth: Auth;
  internal: boolean;
}

type MaybePromise<T> = T | Promise<T>;

/**
 * An interceptor: a plain object in the ordered `interceptors` list of the config. Every hook
 * is optional; hooks run in list order. See docs/interceptors.md.
 */
export interface Interceptor {
  /** Names the interceptor in logs and errors; required when it declares effects. */
  name?: string;
  /**
   * Where the hooks apply: one pattern or several. Default `["**"]` (everywhere). For mutation
   * hooks a pattern matches once per concrete path it matches in the mutation's shape (a
   * pattern ending in `**` matches once, at its prefix); for read hooks it matches every path
   * it matches at, above or below the read.
   */
  path?: Pattern | readonly Pattern[];
  /**
   * Runs inside the write transaction before commit, once per match. Throw a `KoraError` to
   * reject the whole mutation (nothing written, no watcher notified); return a `MutationInput`
   * to add writes, committed atomically with it. Additions are themselves intercepted (as
   * internal writes) until nothing new is added.
   */
  beforeMutation?(args: MutationHookArgs): MaybePromise<MutationInput | undefined | void>;
  /**
   * Runs inside the write transaction after every `beforeMutation`, once per match of the final
   * mutation. The tasks it returns are recorded in the outbox with the mutation and run after
   * commit by `runEffect`, retried with backoff, at least once, across restarts.
   */
  effect?(args: MutationHookArgs): MaybePromise<EffectTask | readonly EffectTask[] | undefined | void>;
  /** Performs one recorded task. Throwing schedules a retry (until `effectRetry.attempts`). */
  runEffect?(payload: unknown, context: EffectContext): MaybePromise<void>;
  /** Retry policy of this interceptor's effects. Defaults: 8 attempts, 500 ms doubling to 60 s. */
  effectRetry?: { attempts?: number; baseMs?: number; maxMs?: number };
  /** Best effort, after commit; a failure is logged and never undoes the write. */
  afterMutation?(args: AfterMutationArgs): MaybePromise<void>;
  /**
   * Authorizes reads: `path` queries, `watch` subscriptions and every event delivered to a
   * watcher. Called for each match at or above the read path and inside the data delivered.
   * Return a `ReadVerdict`; throwing a `KoraError` forbids like `false` does.
   */
  beforeRead?(args: ReadHookArgs): MaybePromise<ReadVerdict | void>;
  /**
   * Answers a `path` query whose path this interceptor's pattern matches, instead of the store
   * (virtual data). Return `undefined` for "nothing here". Watches are not virtual.
   */
  resolveQuery?(args: ResolveQueryArgs): MaybePromise<Node | undefined>;
}

/** Identity, for type inference in config files: `defineInterceptor({ ... })`. */
export function defineInterceptor<T extends Interceptor>(interceptor: T): T {
  return interceptor;
}
