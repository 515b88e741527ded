/**
 * The gateway core: one object that reads, commits and watches, with limits applied. Transports
 * (GraphQL over HTTP, SSE and WebSocket) sit on top of it; it knows nothing about them.
 */
import { withDeadline } from "./deadline.ts";
import { KoraError, showPath, unavailable } from "./errors.ts";
import { type CommitOptions, ConflictClock, type ConflictOptions } from "./conflicts.ts";
import type { BuildMutation, CommitResult, ReadRequest, ReadResult, Store } from "./store.ts";
import { applyMutation, emptyTree, getNode, listChildren } from "./tree.ts";
import {
  type ChildSummary,
  DEFAULT_LIMITS,
  type KeysOptions,
  type Limits,
  type Mutation,
  type Node,
  type NodeType,
  type Path,
  type ReadOptions,
  type Tree,
  type Version,
} from "./types.ts";
import { type Watch, type WatchEvent, type WatchHub, type WatchOptions, createWatchHub } from "./watch.ts";

/**
 * Who is asking: built once per HTTP request or WebSocket connection (server/auth.ts) and passed
 * to every gateway call. Server-side code that passes none acts as `INTERNAL_CALLER`.
 */
export interface Caller {
  /** The verified token's claims, or null for anonymous callers. */
  auth: Readonly<Record<string, unknown>> | null;
  /** True for server-side writes and reads (interceptor additions, effects, scripts). */
  internal: boolean;
  /** Seconds since the epoch when `auth` expires (the token's `exp`); watches end then. */
  expiresAt?: number | undefined;
}

export const INTERNAL_CALLER: Caller = Object.freeze({ auth: null, internal: true });

/**
 * The server-side logic the gateway runs on every commit, read and watch: implemented by the
 * interceptor chain (interceptors/chain.ts). core/ only knows this interface.
 */
export interface Pipeline {
  /** The builder a commit runs inside the write transaction (interceptors, additions, outbox). */
  build(mutation: Mutation, caller: Caller): BuildMutation;
  /** After a commit (afterMutation hooks, effect runner wake-up); never throws. */
  committed(result: CommitResult, caller: Caller): void;
  /** Answers a read of a virtual path, or undefined when the store should. */
  resolve(path: Path, options: ReadOptions | undefined, caller: Caller): Promise<{ value: Node | undefined } | undefined>;
  /** Throws FORBIDDEN when `caller` may read nothing at `target` (queries and new watches). */
  authorize(target: Path, caller: Caller, kind: "query" | "watch"): Promise<void>;
  /** The part of a value read at `target` that `caller` may see (undefined when nothing). */
  filterValue(target: Path, value: Node | undefined, caller: Caller): Promise<Node | undefined>;
  /**
   * Which of `children`, listed at `target` by a keys listing, `caller` may see: exactly the
   * keys that the `path` query of `target` would hold once filtered (`filterValue`), decided
   * without reading the children's subtrees unless a hook decides only below a child: then that
   * child is kept when anything under it is readable, found by listing keys with `list` (never
   * values). `leaf`: what is stored at `target` is a leaf (`children` is then empty). Throws
   * FORBIDDEN as `filterValue` does.
   */
  filterChildren(target: Path, leaf: boolean, children: readonly ChildSummary[], caller: Caller, list: ListChildren): Promise<ChildSummary[]>;
  /** The part of a watch event (rooted at []) that `caller` may see; null drops the event. */
  filterEvent(target: Path, mutation: Mutation, caller: Caller): Promise<Mutation | null>;
  /** Whether reads need checking at all (false: no read hooks, so reads skip the pipeline). */
  readonly checksReads: boolean;
  /** Starts background work (the effect runner) once the gateway exists. */
  start?(gateway: Gateway): void;
  close?(): Promise<void>;
}

/** Lists one page of the children of `path` after `after` (keys only), for `filterChildren`. */
export type ListChildren = (path: Path, after: string | undefined) => Promise<{ children: ChildSummary[]; more: boolean }>;

/** The smallest logger interface Kora needs; pino satisfies it. */
export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

export interface GatewayOptions {
  store: Store;
  /** Input limits; any left out take the defaults of `DEFAULT_LIMITS`. */
  limits?: Partial<Limits>;
  /** Most undelivered events per watch before it is resynced with a snapshot. Default 1000. */
  watchBuffer?: number;
  /**
   * Change-log retention: entries are removed once they are both older than `maxAgeMs`
   * (default 24 h) and more than `keep` versions old (default 100,000), checked every
   * `intervalMs` (default 60 s; 0 disables trimming).
   */
  retention?: { keep?: number; maxAgeMs?: number; intervalMs?: number };
  log?: Logger;
  /** Server-side logic run on every commit, read and watch (the interceptor chain). */
  pipeline?: Pipeline;
  /** Timestamps and conflict resolution for offline clients (docs/conflicts.md). */
  conflicts?: ConflictOptions;
  /**
   * The longest a client's read, write or new watch waits for the store, in milliseconds; past it
   * the call fails with UNAVAILABLE (a write then says its outcome is unknown; its retry with the
   * same write id is safe). Server-side callers (`INTERNAL_CALLER`: imports, effects) have none.
   * Default 10000; 0 disables.
   */
  requestTimeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/** One page of a caller's keys listing (`Gateway.keys`). */
export interface KeysPage {
  /** The version the listing was read at (its first statement, when read rules made it read more). */
  version: Version;
  /** What is at the path: an object, or the leaf's type. */
  type: NodeType;
  /** The children, in byte order of keys. */
  children: ChildSummary[];
  /** The last child's key when more (readable) children follow it: pass it as `after`. */
  next: string | undefined;
}



export interface Gateway {
  readonly store: Store;
  readonly limits: Limits;
  readonly hub: WatchHub;
  readonly log: Logger;
  readonly pipeline: Pipeline | undefined;
  /** Reads the store directly: no interceptor, no authorization (server-side code). */
  read(requests: readonly ReadRequest[]): Promise<ReadResult>;
  /**
   * Reads for a caller: virtual paths resolved, each value authorized and filtered. A request the
   * caller may not read at all yields a FORBIDDEN `KoraError` in its place.
   */
  query(requests: readonly ReadRequest[], caller: Caller): Promise<{ version: number; values: (Node | undefined | KoraError)[] }>;
  /**
   * Lists the children of `path` for a caller, keys only (the `keys` query): up to
   * `options.limit` children after `options.after` that the caller may see, each with its type
   * (and a small leaf's value), never what is below them. Undefined when `path` holds nothing
   * readable or the selection has no children; a leaf at `path` is a page of its type with no
   * children. FORBIDDEN where `path` would be.
   */
  keys(path: Path, options: KeysOptions, caller: Caller): Promise<KeysPage | undefined>;
  /**
   * Commits a normalized mutation through the pipeline as `caller` (default: internal), or a
   * builder run inside the write transaction as is.
   */
  commit(mutation: Mutation | BuildMutation, caller?: Caller, options?: CommitOptions): Promise<CommitResult>;
  /** The clock that stamps commits and resolves conflicts (docs/conflicts.md). */
  readonly conflicts: ConflictClock;
  /** Watches `path` as `caller` (default: internal): authorized, events filtered, ends on expiry. */
  watch(path: Path, options?: WatchOptions, caller?: Caller): Promise<Watch>;
  /** True once close() was called (readiness answers 503 from then on). */
  readonly closing: boolean;
  /** Stops accepting work, waits for in-flight commits, ends watches, closes the store. */
  close(): Promise<void>;
}

export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { store } = options;
  const log = options.log ?? silentLogger;
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const hub = createWatchHub({
    store,
    maxBuffer: options.watchBuffer ?? 1000,
    firstEventTimeoutMs: requestTimeoutMs,
    onError: (error) => log.error({ err: error }, "reading the change log failed; retrying"),
  });
  await hub.start();

  const conflicts = new ConflictClock(options.conflicts);
  const keep = options.retention?.keep ?? 100_000;
  const maxAgeMs = options.retention?.maxAgeMs ?? 24 * 60 * 60 * 1000;
  const intervalMs = options.retention?.intervalMs ?? 60_000;
  const trimTimer =
    intervalMs > 0
      ? setInterval(() => {
          store.trim({ keep, maxAgeMs }).catch((error) => log.warn({ err: error }, "trimming the change log failed"));
          store.trimTombstones?.(conflicts.horizon()).catch((error) => log.warn({ err: error }, "trimming tombstones failed"));
        }, intervalMs)
      : undefined;
  trimTimer?.unref();

  let closing = false;
  const inFlight = new Set<Promise<unknown>>();

  const { pipeline } = options;

  async function query(requests: readonly ReadRequest[], caller: Caller) {
    const values: (Node | undefined | KoraError)[] = new Array(requests.length);
    const toStore: number[] = [];
    if (pipeline) {
      await Promise.all(
        requests.map(async (r, i) => {
          try {
            if (pipeline.checksReads) await pipeline.authorize(r.path, caller, "query");
            const virtual = await pipeline.resolve(r.path, r.options, caller);
            if (virtual) values[i] = virtual.value;
            else toStore.push(i);
          } catch (error) {
            if (error instanceof KoraError) values[i] = error;
            else throw error;
          }
        }),
      );
    } else {
      for (let i = 0; i < requests.length; i++) toStore.push(i);
    }
    toStore.sort((a, b) => a - b);
    const read = await store.read(toStore.map((i) => requests[i] as ReadRequest));
    toStore.forEach((i, j) => {
      values[i] = read.values[j];
    });
    if (pipeline?.checksReads) {
      await Promise.all(
        requests.map(async (r, i) => {
          const v = values[i];
          if (v instanceof KoraError) return;
          try {
            values[i] = await pipeline.filterValue(r.path, v, caller);
          } catch (error) {
            if (error instanceof KoraError) values[i] = error;
            else throw error;
          }
        }),
      );
    }
    return { version: read.version, values };
  }

  async function keys(path: Path, options: KeysOptions, caller: Caller): Promise<KeysPage | undefined> {
    const { limit } = options;
    const page = (version: Version, type: NodeType, children: ChildSummary[], more: boolean): KeysPage | undefined => {
      if (type === "object" && children.length === 0) return undefined; // as `path`: no children selected is null
      return { version, type, children, next: more ? children[children.length - 1]?.key : undefined };
    };
    if (pipeline) {
      if (pipeline.checksReads) await pipeline.authorize(path, caller, "query");
      // A virtual path: its resolver answers a `path` read (keys after `after` are those from
      // `after + " "` on: no key holds a character below U+0020), then it is listed in memory.
      const min = options.after === undefined ? {} : { min: `${options.after} ` };
      const virtual = await pipeline.resolve(path, { ...min, limit: limit + 1 }, caller);
      if (virtual) {
        const value = pipeline.checksReads ? await pipeline.filterValue(path, virtual.value, caller) : virtual.value;
        const listed = listChildren(value, options);
        return listed.node === undefined ? undefined : page(await store.version(), listed.node, listed.children, listed.more);
      }
    }
    if (!pipeline?.checksReads) {
      const r = await store.keys(path, options);
      return r.node === undefined ? undefined : page(r.version, r.node, r.children, r.more);
    }
    // Read rules: each page of the store's listing is filtered, and pages are read until `limit`
    // readable children and one more are found (or the children end), so that `next` is never
    // the key of a child the caller may not see.
    const list: ListChildren = (p, after) => store.keys(p, { after, limit: 200, valueBytes: 0 });
    const out: ChildSummary[] = [];
    let version: Version | undefined;
    let after = options.after;
    for (;;) {
      const r = await store.keys(path, { ...options, after });
      version ??= r.version;
      // (A later page may find the node changed by a commit since the first: the listing ends.)
      if (r.node === undefined) break;
      if (r.node !== "object") {
        if (after !== options.after) break;
        await pipeline.filterChildren(path, true, [], caller, list); // FORBIDDEN for an unreadable leaf
        return page(version, r.node, [], false);
      }
      out.push(...(await pipeline.filterChildren(path, false, r.children, caller, list)));
      const last = r.children[r.children.length - 1];
      // Every round moves `after` forward through the children: bounded by their number.
      if (out.length > limit || !r.more || !last) break;
      after = last.key;
    }
    const more = out.length > limit;
    return version === undefined ? undefined : page(version, "object", out.slice(0, limit), more);
  }

  /** A client's wait for the store ends at its deadline; server-side work has none. */
  const bounded = <T>(caller: Caller, work: Promise<T>, message: () => string): Promise<T> =>
    caller.internal ? work : withDeadline(work, requestTimeoutMs, message);

  const gateway: Gateway = {
    store,
    limits,
    hub,
    log,
    pipeline,
    get closing() {
      return closing;
    },
    read: (requests) => store.read(requests),
    query: (requests, caller) =>
      bounded(caller, query(requests, caller), () => `the store did not answer the read within ${requestTimeoutMs} ms; retry later`),
    keys: (path, keysOptions, caller) =>
      bounded(caller, keys(path, keysOptions, caller), () => `the store did not answer the listing of ${showPath(path)} within ${requestTimeoutMs} ms; retry later`),
    conflicts,
    commit(mutation, caller = INTERNAL_CALLER, commitOptions = {}) {
      return bounded(
        caller,
        commitNow(mutation, caller, commitOptions),
        () =>
          `the store did not confirm the write within ${requestTimeoutMs} ms: it may or may not have been applied; retrying with the same writeId is safe`,
      );
    },
    watch(path, watchOptions = {}, caller = INTERNAL_CALLER) {
      return bounded(
        caller,
        openWatch(path, watchOptions, caller),
        () => `the store did not answer within ${requestTimeoutMs} ms to start the watch of ${showPath(path)}; retry later`,
      );
    },
    async close() {
      if (closing) return;
      closing = true;
      if (trimTimer) clearInterval(trimTimer);
      await Promise.allSettled([...inFlight]);
      await pipeline?.close?.();
      await hub.close();
      await store.close();
    },
  };

  async function commitNow(mutation: Mutation | BuildMutation, caller: Caller, commitOptions: CommitOptions): Promise<CommitResult> {
    if (closing) throw unavailable("the gateway is shutting down; retry on another one");
    // Stamped, resolved against newer writes (docs/conflicts.md), then through the pipeline.
    const build: BuildMutation = conflicts.wrap(mutation, (m) => (pipeline ? pipeline.build(m, caller) : async () => m), commitOptions);
    const pending = store.commit(build);
    inFlight.add(pending);
    try {
      const result = await pending;
      if (pipeline && !result.empty && !result.replayed) pipeline.committed(result, caller);
      return result;
    } finally {
      inFlight.delete(pending);
    }
  }

  async function openWatch(path: Path, watchOptions: WatchOptions, caller: Caller): Promise<Watch> {
    const filtering = pipeline?.checksReads === true;
    if (filtering) await pipeline.authorize(path, caller, "watch");
    if (!filtering && caller.expiresAt === undefined) return hub.watch(path, watchOptions);
    // The hub's own copy of the value would hold unfiltered data: keep a filtered one here.
    const inner = await hub.watch(path, { ...watchOptions, trackValue: false });
    return guardedWatch(inner, {
      filter: filtering ? (m) => pipeline.filterEvent(path, m, caller) : undefined,
      trackValue: watchOptions.trackValue ?? false,
      expiresAt: caller.expiresAt,
    });
  }

  pipeline?.start?.(gateway);
  return gateway;
}

/**
 * A watch whose events pass through `filter` (dropped when it returns null), whose `value` is
 * computed from the filtered events, and which ends with UNAUTHENTICATED once `expiresAt` (seconds
 * since the epoch) passes: a client whose token expired stops receiving events.
 */
function guardedWatch(
  inner: Watch,
  options: {
    filter: ((m: Mutation) => Promise<Mutation | null>) | undefined;
    trackValue: boolean;
    expiresAt: number | undefined;
  },
): Watch {
  let replica: Tree = emptyTree();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired: Promise<never> | undefined;
  if (options.expiresAt !== undefined) {
    const ms = Math.max(0, options.expiresAt * 1000 - Date.now());
    expired = new Promise<never>((_resolve, reject) => {
      // setTimeout holds at most ~24.8 days; longer tokens are checked again on every event.
      timer = setTimeout(() => reject(expiredError(inner.path)), Math.min(ms, 2 ** 31 - 1));
      timer.unref?.();
    });
    expired.catch(() => {});
  }
  const stop = () => {
    if (timer) clearTimeout(timer);
    inner.close();
  };
  const watch: Watch = {
    path: inner.path,
    async next(): Promise<IteratorResult<WatchEvent>> {
      for (;;) {
        if (options.expiresAt !== undefined && options.expiresAt * 1000 <= Date.now()) {
          stop();
          throw expiredError(inner.path);
        }
        const pending = inner.next();
        let result: IteratorResult<WatchEvent>;
        try {
          result = await (expired ? Promise.race([pending, expired]) : pending);
        } catch (error) {
          stop();
          throw error;
        }
        if (result.done) return result;
        const event = result.value;
        let mutation: Mutation | null = event.mutation;
        if (options.filter) mutation = await options.filter(event.mutation);
        if (mutation === null) {
          if (!event.snapshot) continue;
          // A snapshot must still reach the client (it resets its copy), with nothing readable.
          mutation = { merge: emptyTree(), delete: event.mutation.delete };
        }
        const out: WatchEvent = { version: event.version, snapshot: event.snapshot, mutation };
        if (options.trackValue) {
          if (event.snapshot) replica = emptyTree();
          replica = applyMutation(replica, mutation);
          out.value = getNode(replica, inner.path);
        }
        return { done: false, value: out };
      }
    },
    async return() {
      stop();
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      stop();
      throw error;
    },
    close: stop,
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  return watch;
}

function expiredError(path: Path): KoraError {
  return new KoraError("UNAUTHENTICATED", `the token expired; the watch of ${showPath(path)} ended (reconnect with a fresh token)`, {
    path,
  });
}
