/**
 * Watches: the live half of Kora. One `WatchHub` per process follows the store's change log in
 * version order and hands each change to the watches it concerns, found through a trie of
 * watched paths. The protocol it implements is docs/watch.md (contract section 4).
 *
 * Why no gap and no duplicate: a watch registers with the hub (and starts queueing live changes)
 * BEFORE it reads its snapshot or its catch-up from the log. Everything the hub has not yet
 * dispatched therefore reaches the queue, everything it already dispatched is at or below the
 * version of any read made afterwards, and the watch drops every change whose version is not
 * above the version its client already has.
 */
import { withDeadline } from "./deadline.ts";
import { KoraError, badInput } from "./errors.ts";
import type { Store } from "./store.ts";
import {
  applyMutation,
  emptyTree,
  getNode,
  has,
  isTree,
  restrict,
  snapshotMutation,
} from "./tree.ts";
import type { Change, Mutation, Node, Path, Tree, Version } from "./types.ts";

export interface WatchEvent {
  version: Version;
  /** True when this event replaces the client's copy of the watched subtree. */
  snapshot: boolean;
  /** The change restricted to the watched subtree, rooted at []. */
  mutation: Mutation;
  /** The value at the watched path after this event; only when the watch tracks values. */
  value?: Node | undefined;
}

export interface WatchOptions {
  /** Resume after this version instead of starting with a snapshot. */
  since?: Version | undefined;
  /** Keep a copy of the watched subtree so each event can carry `value`. */
  trackValue?: boolean | undefined;
}

/** A live watch: an async iterable of events. Closing (or `return()`) unregisters it. */
export interface Watch extends AsyncIterableIterator<WatchEvent> {
  readonly path: Path;
  close(): void;
}

export interface WatchHubOptions {
  store: Store;
  /**
   * Most undelivered events one watch may hold. On overflow its queue is dropped and the watch
   * continues with a fresh snapshot (contract section 4). Default 1000.
   */
  maxBuffer?: number;
  /** Changes read from the log per query. Default 500. */
  pageSize?: number;
  /** Called when reading the log fails; the hub retries on the next notice. */
  onError?: (error: unknown) => void;
  /**
   * The longest a new watch waits for its first event (snapshot or catch-up) before it fails
   * with UNAVAILABLE, in milliseconds. Later reads (resyncs after an overflow or an outage) are
   * retried with backoff instead: an open watch stays open while the store is away. Default 10000.
   */
  firstEventTimeoutMs?: number;
}

export interface WatchHub {
  /** Starts following the log from the store's current version. */
  start(): Promise<void>;
  watch(path: Path, options?: WatchOptions): Promise<Watch>;
  /** The last version dispatched to watches. */
  readonly cursor: Version;
  /** Number of open watches. */
  readonly size: number;
  /** Resolves once every change up to `version` has been dispatched. */
  caughtUp(version: Version): Promise<void>;
  close(): Promise<void>;
}

/** One node of the trie of watched paths. */
interface IndexNode {
  children: Map<string, IndexNode>;
  watches: Set<LiveWatch>;
  parent: IndexNode | undefined;
  key: string;
}

function indexNode(parent: IndexNode | undefined, key: string): IndexNode {
  return { children: new Map(), watches: new Set(), parent, key };
}

export function createWatchHub(options: WatchHubOptions): WatchHub {
  const { store } = options;
  const maxBuffer = options.maxBuffer ?? 1000;
  const pageSize = options.pageSize ?? 500;
  const root = indexNode(undefined, "");
  let cursor: Version = 0;
  let wanted: Version = 0;
  /** The greatest version the feed announced: committed (caughtUp may ask for a later one). */
  let heard: Version = 0;
  let pumping: Promise<void> | undefined;
  let unsubscribe: (() => void) | undefined;
  let closed = false;
  let count = 0;
  const waiters: { version: Version; resolve: () => void }[] = [];

  function notice(version: Version): void {
    if (version > wanted) wanted = version;
    if (wanted > cursor && !pumping && !closed) {
      pumping = pump().then((ok) => {
        pumping = undefined;
        if (!ok) {
          // The store failed (e.g. the database restarted): retry soon, not in a hot loop.
          setTimeout(() => notice(wanted), 500).unref?.();
        } else if (wanted > cursor) notice(wanted); // a notice that arrived mid-dispatch
      });
    }
  }

  async function pump(): Promise<boolean> {
    try {
      while (!closed && cursor < wanted) {
        if (count === 0 && heard >= wanted) {
          // Nobody watches: dispatching to no one needs no read of the log (a write would pay
          // one per commit). A watch registered later starts from a snapshot or its own log read.
          cursor = wanted;
          settleWaiters();
          break;
        }
        const page = await store.changes(cursor, pageSize);
        if (page.length === 0) {
          wanted = cursor; // nothing visible beyond the cursor yet; the next notice retries
          break;
        }
        for (const change of page) {
          if (change.version !== cursor + 1) {
            // Only a trimmed log makes this happen (versions are contiguous): every watch
            // resyncs with a snapshot rather than miss what fell out of the log.
            for (const w of allWatches(root)) w.resync();
          }
          dispatch(change);
          cursor = change.version;
        }
        if (cursor > wanted) wanted = cursor;
        settleWaiters();
      }
      return true;
    } catch (error) {
      options.onError?.(error);
      return false;
    }
  }

  function settleWaiters(): void {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as (typeof waiters)[number];
      if (w.version <= cursor) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** Walks the trie along the change's shape: cost follows the change, not the watch count. */
  function dispatch(change: Change): void {
    visit(root, [], change.mutation.merge, change.mutation.delete, change);
  }

  function visit(
    node: IndexNode,
    path: string[],
    merge: unknown,
    del: unknown,
    change: Change,
  ): void {
    if (node.watches.size > 0) {
      const restricted = restrict(change.mutation, path);
      if (restricted) for (const w of node.watches) w.push(change.version, restricted);
    }
    if (node.children.size === 0) return;
    const m = isTree(merge) ? merge : undefined;
    const d = isTree(del) ? (del as Record<string, unknown>) : undefined;
    const visitChild = (key: string, child: IndexNode) => {
      const mv = m && has(m, key) ? m[key] : undefined;
      const dv = d && has(d, key) ? d[key] : undefined;
      if (dv === true || (mv !== undefined && !isTree(mv))) {
        // Replaced or removed whole: every watch at or below this key hears of it.
        visitAll(child, [...path, key], change);
      } else if (mv !== undefined || dv !== undefined) {
        visit(child, [...path, key], mv, dv, change);
      }
    };
    const changedKeys = (m ? Object.keys(m).length : 0) + (d ? Object.keys(d).length : 0);
    if (node.children.size <= changedKeys) {
      for (const [key, child] of node.children) visitChild(key, child);
    } else {
      const seen = new Set<string>();
      for (const source of [m, d]) {
        if (!source) continue;
        for (const key in source) {
          if (seen.has(key)) continue;
          seen.add(key);
          const child = node.children.get(key);
          if (child) visitChild(key, child);
        }
      }
    }
  }

  function visitAll(node: IndexNode, path: string[], change: Change): void {
    if (node.watches.size > 0) {
      const restricted = restrict(change.mutation, path);
      if (restricted) for (const w of node.watches) w.push(change.version, restricted);
    }
    for (const [key, child] of node.children) visitAll(child, [...path, key], change);
  }

  function* allWatches(node: IndexNode): Generator<LiveWatch> {
    yield* node.watches;
    for (const child of node.children.values()) yield* allWatches(child);
  }

  function register(w: LiveWatch): IndexNode {
    let node = root;
    for (const key of w.path) {
      let next = node.children.get(key);
      if (!next) {
        next = indexNode(node, key);
        node.children.set(key, next);
      }
      node = next;
    }
    node.watches.add(w);
    count++;
    return node;
  }

  function unregister(w: LiveWatch, node: IndexNode): void {
    if (!node.watches.delete(w)) return;
    count--;
    // Prune empty branches so the trie only holds watched paths.
    let n: IndexNode | undefined = node;
    while (n?.parent && n.watches.size === 0 && n.children.size === 0) {
      n.parent.children.delete(n.key);
      n = n.parent;
    }
  }

  const hub: WatchHub = {
    get cursor() {
      return cursor;
    },
    get size() {
      return count;
    },
    async start() {
      cursor = await store.version();
      wanted = cursor;
      unsubscribe = store.feed.subscribe((version) => {
        if (version > heard) heard = version;
        notice(version);
      });
    },
    async watch(path, watchOptions = {}) {
      if (closed) throw new Error("watch hub is closed");
      const { since } = watchOptions;
      if (since !== undefined) {
        const current = await store.version();
        if (!Number.isSafeInteger(since) || since < 0 || since > current) {
          throw badInput(
            `since ${since} was never issued by this store (its current version is ${current}); pass a version from an earlier event, or omit since for a snapshot`,
            path,
          );
        }
      }
      const w = new LiveWatch(path, store, {
        maxBuffer,
        pageSize,
        since,
        trackValue: watchOptions.trackValue ?? false,
        firstEventTimeoutMs: options.firstEventTimeoutMs ?? 10_000,
      });
      const node = register(w);
      w.onClose = () => unregister(w, node);
      return w;
    },
    caughtUp(version) {
      if (version <= cursor) return Promise.resolve();
      notice(version);
      return new Promise((resolve) => waiters.push({ version, resolve }));
    },
    async close() {
      closed = true;
      unsubscribe?.();
      for (const w of [...allWatches(root)]) w.close();
      await pumping;
      for (const w of waiters.splice(0)) w.resolve();
    },
  };
  return hub;
}

type Pending = { version: Version; mutation: Mutation };

class LiveWatch implements Watch {
  readonly path: Path;
  onClose: (() => void) | undefined;
  private readonly store: Store;
  private readonly maxBuffer: number;
  private readonly pageSize: number;
  private readonly trackValue: boolean;
  private readonly firstEventTimeoutMs: number;
  /** True once an event was delivered: from then on store failures are waited out, not thrown. */
  private started = false;
  private retryDelay = 0;
  private queue: Pending[] = [];
  /** The version the client's copy has reached; anything at or below it is dropped. */
  private last: Version = -1;
  private needSnapshot: boolean;
  private catchUpFrom: Version | undefined;
  private closed = false;
  private wake: (() => void) | undefined;
  /** The watched subtree rooted at [], kept only when events must carry `value`. */
  private replica: Tree = emptyTree();

  constructor(
    path: Path,
    store: Store,
    options: {
      maxBuffer: number;
      pageSize: number;
      since: Version | undefined;
      trackValue: boolean;
      firstEventTimeoutMs: number;
    },
  ) {
    this.firstEventTimeoutMs = options.firstEventTimeoutMs;
    this.path = path;
    this.store = store;
    this.maxBuffer = options.maxBuffer;
    this.pageSize = options.pageSize;
    this.trackValue = options.trackValue;
    this.needSnapshot = options.since === undefined;
    this.catchUpFrom = options.since;
    if (options.since !== undefined) this.last = options.since;
  }

  /**
   * A synchronous consumer (the graphql-ws fast path, server/watchpath.ts): while the watch is
   * caught up (started, nothing queued, no snapshot or catch-up due), its consumer is waiting in
   * `next()` and `ready()` holds (its socket under the high-water mark), a change is handed to
   * `deliver` from the hub's dispatch at once: no promise, no queue, per watcher and change.
   * Anything else queues as before and comes out of `next()`, in order. `deliver` runs inside
   * the hub's dispatch of a change to all its watchers, so it must not throw.
   */
  direct(deliver: (event: WatchEvent) => void, ready: () => boolean): void {
    this.sink = { deliver, ready };
  }

  private sink: { deliver: (event: WatchEvent) => void; ready: () => boolean } | undefined;

  push(version: Version, mutation: Mutation): void {
    if (this.closed || version <= this.last) return;
    const sink = this.sink;
    if (
      sink &&
      this.wake &&
      this.started &&
      this.queue.length === 0 &&
      !this.needSnapshot &&
      this.catchUpFrom === undefined &&
      sink.ready()
    ) {
      this.last = version;
      sink.deliver(this.event(version, false, mutation));
      return;
    }
    if (this.queue.length >= this.maxBuffer) {
      // A client that cannot keep up gets a fresh snapshot instead of an unbounded queue.
      this.resync();
      return;
    }
    this.queue.push({ version, mutation });
    this.signal();
  }

  resync(): void {
    this.queue = [];
    this.catchUpFrom = undefined;
    this.needSnapshot = true;
    this.signal();
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    for (;;) {
      if (this.closed) return { done: true, value: undefined };
      if (this.needSnapshot || this.catchUpFrom !== undefined) {
        let event: WatchEvent | undefined;
        try {
          event = await this.fromStore();
        } catch (error) {
          const away = error instanceof KoraError && error.code === "UNAVAILABLE";
          // A new watch fails fast; an open one waits the outage out and resumes from where its
          // client is (needSnapshot / catchUpFrom were put back), so it sees no gap.
          if (!this.started || !away) {
            // Like a generator, a watch that threw is over: yoga turns a thrown error into an
            // error result and asks for the next one; a watch still open would throw again, and
            // again (an endless stream of errors over SSE, test/unavailable.test.ts).
            this.close();
            throw error;
          }
          await this.backoff();
          continue;
        }
        this.retryDelay = 0;
        if (event) {
          this.started = true;
          return { done: false, value: event };
        }
      }
      if (this.closed) return { done: true, value: undefined };
      if (this.needSnapshot) continue;
      const item = this.queue.shift();
      if (item) {
        if (item.version <= this.last) continue;
        this.last = item.version;
        this.started = true;
        return { done: false, value: this.event(item.version, false, item.mutation) };
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /**
   * The snapshot, or the catch-up from the log, that the watch needs next: the snapshot event, or
   * undefined once a catch-up filled the queue. On failure the need is put back.
   */
  private async fromStore(): Promise<WatchEvent | undefined> {
    const since = this.catchUpFrom;
    const wasSnapshot = this.needSnapshot;
    const work = (async () => {
      if (this.needSnapshot) return this.snapshot();
      if (since !== undefined) await this.catchUp(since);
      return this.needSnapshot ? this.snapshot() : undefined;
    })();
    try {
      return await (this.started
        ? work
        : withDeadline(
            work,
            this.firstEventTimeoutMs,
            () =>
              `the store did not answer within ${this.firstEventTimeoutMs} ms to start the watch; retry later`,
          ));
    } catch (error) {
      if (wasSnapshot || since === undefined) this.needSnapshot = true;
      else this.catchUpFrom = since;
      throw error;
    }
  }

  /** Waits before the next try at the store (250 ms doubling to 2 s); close() or a change wakes it. */
  private async backoff(): Promise<void> {
    this.retryDelay = Math.min(Math.max(this.retryDelay * 2, 250), 2000);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.retryDelay);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Reads the log from `since` into the queue's front; falls back to a snapshot if trimmed. */
  private async catchUp(since: Version): Promise<void> {
    this.catchUpFrom = undefined;
    const missed: Pending[] = [];
    let after = since;
    for (;;) {
      const page = await this.store.changes(after, this.pageSize);
      const first = page[0];
      if (after === since && !first && (await this.store.version()) > since) {
        // Nothing after `since` in the log, yet a later version exists: trimmed, or committed
        // between the two reads. Look again: only a log that still lacks since + 1 is trimmed.
        if ((await this.store.changes(since, 1))[0]?.version === since + 1) continue;
        this.needSnapshot = true;
        return;
      }
      const trimmed = after === since && first !== undefined && first.version !== since + 1;
      if (trimmed) {
        this.needSnapshot = true; // the log no longer reaches back to `since`
        return;
      }
      for (const change of page) {
        const restricted = restrict(change.mutation, this.path);
        if (restricted) missed.push({ version: change.version, mutation: restricted });
      }
      if (page.length < this.pageSize) break;
      after = (page[page.length - 1] as Change).version;
      if (missed.length > this.maxBuffer) {
        this.needSnapshot = true; // too far behind: a snapshot is cheaper than the replay
        return;
      }
    }
    if (this.trackValue) {
      // The value needs a base to apply changes to: start from the data as of `since`... which we
      // do not have. Resuming clients keep their own replica; a tracked value starts from a snapshot.
      this.needSnapshot = true;
      return;
    }
    this.queue = [...missed, ...this.queue];
  }

  private async snapshot(): Promise<WatchEvent> {
    this.needSnapshot = false;
    this.catchUpFrom = undefined;
    const { version, values } = await this.store.read([{ path: this.path }]);
    this.queue = this.queue.filter((p) => p.version > version);
    this.last = version;
    if (this.trackValue) this.replica = emptyTree();
    return this.event(version, true, snapshotMutation(this.path, values[0]));
  }

  private event(version: Version, snapshot: boolean, mutation: Mutation): WatchEvent {
    const event: WatchEvent = { version, snapshot, mutation };
    if (this.trackValue) {
      this.replica = applyMutation(this.replica, mutation);
      event.value = getNode(this.replica, this.path);
    }
    return event;
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    this.close();
    return { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<WatchEvent>> {
    this.close();
    throw error;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.onClose?.();
    this.signal();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
