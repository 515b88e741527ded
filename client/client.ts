/**
 * Kora's offline-first client (docs/client.md). It keeps a local replica of the watched subtrees,
 * applies writes optimistically and queues them with an id and a hybrid-logical-clock stamp,
 * persists replica, cursors and queue, and on reconnect replays the queue in order (the server
 * deduplicates by write id) and resumes every watch from its cursor.
 *
 * The replica is two layers: `confirmed`, the server's data as the watches delivered it, and the
 * queue of local writes on top. What the app sees is `confirmed` with every queued write applied
 * in order; a write leaves the queue once every watch it touches has delivered its version (or
 * at once if the server rejected it: the app's view then rolls back and the error is reported).
 */
import { Hlc, type HlcState, randomNodeId } from "../core/hlc.ts";
import {
  applyMutation,
  checkMutationSize,
  deleteAt,
  emptyTree,
  getNode,
  isEmptyMutation,
  isTree,
  lostOps,
  mergeAt,
  mutationFromInput,
  restrict,
} from "../core/tree.ts";
import { DEFAULT_LIMITS, type DeleteTree, type Limits, type Mutation, type Node, type Path, type Tree } from "../core/types.ts";
import type { ClientStorage } from "./storage.ts";
import {
  type Connection,
  ServerError,
  type Transport,
  type WireEvent,
  type WireResult,
  type WsTransportOptions,
  wsTransport,
} from "./transport.ts";

export type Status = "online" | "offline" | "syncing";

/** A value that changes over time: read `value`, or subscribe to every change. */
export interface Observable<T> {
  readonly value: T;
  /** Calls `listener` with the current value and then on every change; returns an unsubscribe. */
  subscribe(listener: (value: T) => void): () => void;
}

/** A queued local write. */
export interface PendingWrite {
  id: string;
  ts: string;
  merge: Tree;
  delete: DeleteTree;
  /**
   * Set once the server committed it: its version, the mutation as committed (what of the write
   * won, docs/conflicts.md) and the paths of the parts that lost to later writes, if any, with
   * `winners`: the winning write's stamp for each of them, in the same order (null: not known, as
   * for a queue stored by an older client, whose entries have no `winners`).
   */
  committed?: { version: number; mutation: Mutation; lost?: Path[] | undefined; winners?: (string | null)[] | undefined } | undefined;
}

/**
 * A local write lost, whole or in part, to a later write per leaf (last writer wins by HLC stamp):
 * the app can say "your edit was overwritten". Reported once the replica shows the winner.
 */
export interface Conflict {
  /** The local write that lost (as queued: its id, stamp and mutation). */
  write: PendingWrite;
  /**
   * Each losing part: its path, the value this write set there (undefined: a delete), the winner's
   * value now and the stamp of the write that beat it (`MutationResult.lost`; for a part an
   * interceptor rewrote in this very commit, the commit's own stamp). Undefined only when the
   * server could not say (a replay whose winner's tombstone was trimmed since).
   */
  lost: { path: Path; local: Node | undefined; winner: Node | undefined; winnerTs: string | undefined }[];
  /** The losing write's stamp. */
  ts: string;
  /** The latest of the parts' `winnerTs` (they differ when several writes beat parts of this one). */
  winnerTs: string | undefined;
}

/** A write the server refused (on first send or on a replay): it was rolled back locally. */
export interface WriteError {
  write: PendingWrite;
  error: ServerError;
}

export interface ClientOptions {
  /** WebSocket URL of Kora's `/graphql`. Needed unless `transport` is given. */
  url?: string;
  token?: WsTransportOptions["token"];
  /** Where replica, cursors and queue persist. */
  storage: ClientStorage;
  /** `ws`'s WebSocket on Node; browsers use the global one. */
  webSocketImpl?: unknown;
  /** A custom transport (tests use an in-process one). */
  transport?: Transport;
  /** A node holding the paths this user's devices should watch (stored subscriptions). */
  subscriptions?: Path | undefined;
  /** Reconnect backoff: first delay, cap (ms). Each delay is randomized (jitter). */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * Keep-alive over WebSocket: a ping every `pingIntervalMs` (default 5,000; 0: off), and a
   * connection that does not answer within `pongTimeoutMs` (default 3,000) counts as dropped:
   * `status` turns `offline` and the client reconnects.
   */
  keepAlive?: { pingIntervalMs?: number; pongTimeoutMs?: number };
  /** How long a connection may take to open (ms, default 10,000). */
  connectTimeoutMs?: number;
  /** Start without connecting (call `connect()`); default false. */
  startOffline?: boolean;
  /** Delay before the replica is saved after a change (ms, default 50). The queue saves at once. */
  persistDelayMs?: number;
  /**
   * The server's limits (key bytes, depth, mutation bytes), checked before a write is queued so
   * that input the server would refuse fails at once instead of after going online. Default:
   * the server's defaults.
   */
  limits?: Partial<Limits>;
  /** Wall clock (tests). */
  now?: () => number;
}

interface Sub {
  path: Path;
  key: string;
  since: string | undefined;
  /** App watches and stored subscriptions using it; 0: dormant (kept, not subscribed). */
  refs: number;
  stop: (() => void) | undefined;
  /** True once it delivered an event on the current connection. */
  live: boolean;
}

interface Persisted {
  confirmed: Tree;
  subs: { path: string[]; since: string | undefined }[];
}

const keyOf = (path: Path) => JSON.stringify(path);

/**
 * Calls an app's listener. A listener that throws must not break the client's state or, called
 * from a socket or timer callback, end the host process: the error is reported and delivery goes on.
 */
export function callListener<A extends unknown[]>(fn: (...args: A) => void, ...args: A): void {
  try {
    fn(...args);
  } catch (error) {
    console.error("kora/client: a listener threw (the client goes on):", error);
  }
}

/** A value with listeners, called at once with the current value and then on each change. */
export function observable<T>(initial: T): Observable<T> & { set(value: T): void } {
  let value = initial;
  const listeners = new Set<(v: T) => void>();
  return {
    get value() {
      return value;
    },
    subscribe(listener) {
      listeners.add(listener);
      callListener(listener, value);
      return () => listeners.delete(listener);
    },
    set(next) {
      if (next === value) return;
      value = next;
      for (const l of [...listeners]) callListener(l, value);
    },
  };
}

/** Replaces the subtree at `path` of `tree` (the root when `path` is []). */
function replaceAt(tree: Tree, path: Path, value: Node | undefined): Tree {
  if (path.length === 0) return isTree(value) ? value : emptyTree();
  const cleared = applyMutation(tree, deleteAt(path));
  return value === undefined ? cleared : applyMutation(cleared, mergeAt(path, value));
}

/** `applyMutation` on a draft: objects in `owned` were created by this draft and change in place. */
function applyOwned(tree: Tree, m: Mutation, owned: WeakSet<object>): Tree {
  const own = (node: Tree): Tree => {
    if (owned.has(node)) return node;
    const out = emptyTree();
    for (const k in node) out[k] = node[k] as Node;
    owned.add(out);
    return out;
  };
  const del = (node: Tree, d: DeleteTree): Tree | undefined => {
    let out = node;
    for (const key in d) {
      if (!(key in out)) continue;
      const mark = d[key] as true | DeleteTree;
      const child = out[key] as Node;
      let next: Node | undefined;
      if (mark === true) next = undefined;
      else if (isTree(child)) next = del(child, mark);
      else continue;
      if (next === child) continue;
      out = own(out);
      if (next === undefined) delete out[key];
      else out[key] = next;
    }
    for (const _ in out) return out;
    return undefined;
  };
  const merge = (node: Tree | undefined, mm: Tree): Tree => {
    const out = node === undefined ? own(emptyTree()) : own(node);
    for (const key in mm) {
      const value = mm[key] as Node;
      if (isTree(value)) {
        const existing = out[key];
        out[key] = merge(isTree(existing) ? existing : undefined, value);
      } else out[key] = value;
    }
    return out;
  };
  const afterDelete = del(tree, m.delete) ?? own(emptyTree());
  for (const _ in m.merge) return merge(afterDelete, m.merge);
  return afterDelete;
}

export class KoraClient {
  readonly status = observable<Status>("offline");
  readonly pending = observable<number>(0);

  private readonly storage: ClientStorage;
  private readonly transport: Transport;
  private readonly options: ClientOptions;
  private readonly limits: Limits;
  private hlc!: Hlc;
  private nodeId!: string;
  private confirmed: Tree = emptyTree();
  private visible: Tree = emptyTree();
  private queue: PendingWrite[] = [];
  private readonly subs = new Map<string, Sub>();
  /** Watch listeners; each remembers the value it was last called with (`active` once loaded). */
  private readonly listeners = new Set<{ path: Path; fn: (v: Node | undefined) => void; last: Node | undefined; active: boolean }>();
  private readonly errorListeners = new Set<(e: WriteError) => void>();
  private readonly conflictListeners = new Set<(c: Conflict) => void>();
  /** Internal hooks for createTabClient (client/tabs.ts): visible tree changes, settled writes. */
  private readonly visibleHooks = new Set<(tree: Tree) => void>();
  private readonly settleHooks = new Set<(id: string, result: { write: PendingWrite } | { error: ServerError }) => void>();
  private readonly waiters = new Map<string, { resolve: (r: PendingWrite) => void; reject: (e: unknown) => void }>();
  private connection: Connection | undefined;
  private wantOnline = true;
  private attempt = 0;
  private connectedAt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private sending = false;
  private closed = false;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;
  private saves: Promise<void> = Promise.resolve();
  private writeCounter = 0;
  private storedSubs = new Set<string>();
  private generation = 0;
  private loaded = false;
  /** Set once `close()` persisted the last state: no more storage writes from this instance. */
  private sealed = false;
  private releaseLock: () => Promise<void> = async () => {};
  private closing: Promise<void> | undefined;
  /**
   * Resolves once the stored state is loaded (replica, cursors, queue): `get`, `queued()` and
   * `pending` show it from then on. Rejects when the storage is damaged or held by another
   * instance (`StorageInUseError`); every write then rejects with the same error.
   */
  readonly ready: Promise<void>;

  constructor(options: ClientOptions) {
    this.options = options;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.storage = options.storage;
    if (options.transport) this.transport = options.transport;
    else {
      if (!options.url) throw new Error("createClient needs a url (or a transport)");
      this.transport = wsTransport({
        url: options.url,
        token: options.token,
        webSocketImpl: options.webSocketImpl,
        pingIntervalMs: options.keepAlive?.pingIntervalMs,
        pongTimeoutMs: options.keepAlive?.pongTimeoutMs,
        connectTimeoutMs: options.connectTimeoutMs,
      });
    }
    this.wantOnline = !options.startOffline;
    this.ready = this.load();
    // A storage that cannot be read (damaged files) rejects `ready` and every write; the
    // fire-and-forget steps below must not turn that into unhandled rejections.
    this.ready.catch(() => {});
  }

  // -------------------------------------------------------------------------------------------
  // Loading and saving

  private async load(): Promise<void> {
    this.releaseLock = (await this.storage.lock?.()) ?? (async () => {});
    try {
      await this.loadLocked();
    } catch (error) {
      this.sealed = true;
      await this.releaseLock();
      throw error;
    }
  }

  private async loadLocked(): Promise<void> {
    const meta = (await this.storage.get("meta")) as { nodeId: string; hlc: HlcState } | undefined;
    this.nodeId = meta?.nodeId ?? randomNodeId();
    this.hlc = new Hlc(this.nodeId, { clock: this.options.now ?? Date.now, state: meta?.hlc });
    const replica = (await this.storage.get("replica")) as Persisted | undefined;
    if (replica) {
      this.confirmed = replica.confirmed ?? emptyTree();
      for (const s of replica.subs) this.subs.set(keyOf(s.path), this.newSub(s.path, s.since ?? undefined));
    }
    this.queue = ((await this.storage.get("queue")) as PendingWrite[] | undefined) ?? [];
    this.recompute();
    this.loaded = true;
    await this.put("meta", { nodeId: this.nodeId, hlc: this.hlc.current });
    if (this.closed) return;
    if (this.options.subscriptions) this.retain(this.options.subscriptions);
    if (this.wantOnline) this.connectNow();
  }

  /** Runs `step` once loaded; nothing when loading failed (`ready` carries that error). */
  private afterLoad(step: () => void): void {
    this.ready.then(step, () => {});
  }

  private newSub(path: Path, since: string | undefined): Sub {
    return { path: [...path], key: keyOf(path), since, refs: 0, stop: undefined, live: false };
  }

  /** Every write to storage goes through here: once closed, this instance writes nothing more. */
  private put(key: string, value: unknown): Promise<void> {
    return this.sealed ? Promise.resolve() : this.storage.set(key, value);
  }

  private saveQueue(): void {
    if (this.sealed) return;
    const queue = this.queue.map((w) => ({ ...w }));
    const hlc = this.hlc.current;
    this.saves = this.saves.then(async () => {
      await this.put("queue", queue);
      await this.put("meta", { nodeId: this.nodeId, hlc });
    });
    this.saves.catch(() => {});
  }

  private saveReplicaSoon(): void {
    if (this.saveTimer || this.sealed) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      this.saveReplica();
    }, this.options.persistDelayMs ?? 50);
  }

  private saveReplica(): void {
    const state: Persisted = {
      confirmed: this.confirmed,
      subs: [...this.subs.values()].map((s) => ({ path: [...s.path], since: s.since })),
    };
    this.saves = this.saves.then(() => this.put("replica", state));
    this.saves.catch(() => {});
  }

  /** Resolves once everything so far is persisted. */
  async flush(): Promise<void> {
    await this.ready;
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      this.saveReplica();
    }
    await this.saves;
  }

  // -------------------------------------------------------------------------------------------
  // Reading and watching

  /** The value at `path` in the local replica (server data plus pending local writes). */
  get(path: Path): Node | undefined {
    return getNode(this.visible, path);
  }

  /**
   * Watches `path`: keeps its subtree in the replica (resumed from the stored cursor after a
   * restart) and calls `listener` with the value now and after every local or remote change.
   */
  watch(path: Path, listener: (value: Node | undefined) => void): () => void {
    const entry = { path: [...path], fn: listener, last: undefined as Node | undefined, active: false };
    this.listeners.add(entry);
    this.afterLoad(() => {
      if (!this.listeners.has(entry)) return;
      // Called once with the loaded value, then only when it changes (never twice with one value).
      entry.active = true;
      entry.last = this.get(entry.path);
      this.retain(entry.path);
      callListener(listener, entry.last);
    });
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      const wasActive = entry.active;
      this.listeners.delete(entry);
      if (wasActive) this.release(entry.path);
    };
  }

  /**
   * Calls `listener` when a local write lost to a later write (per-leaf last writer wins), with
   * the losing write, what lost and the winning values. A write that wins, or a later edit
   * elsewhere that simply follows a committed write, is not a conflict. Returns an unsubscribe.
   */
  onConflict(listener: (c: Conflict) => void): () => void {
    this.conflictListeners.add(listener);
    return () => this.conflictListeners.delete(listener);
  }

  /** @internal createTabClient's view of the leader's replica. */
  observeVisible(hook: (tree: Tree) => void): () => void {
    this.visibleHooks.add(hook);
    return () => this.visibleHooks.delete(hook);
  }

  /** @internal Committed or refused writes, whoever queued them (the tab leader tells the other tabs). */
  observeSettled(hook: (id: string, result: { write: PendingWrite } | { error: ServerError }) => void): () => void {
    this.settleHooks.add(hook);
    return () => this.settleHooks.delete(hook);
  }

  onError(listener: (e: WriteError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  private retain(path: Path): void {
    const key = keyOf(path);
    let sub = this.subs.get(key);
    if (!sub) {
      sub = this.newSub(path, undefined);
      this.subs.set(key, sub);
    }
    sub.refs += 1;
    if (sub.refs === 1 && this.connection) this.startSub(sub, this.connection);
  }

  private release(path: Path): void {
    const sub = this.subs.get(keyOf(path));
    if (!sub) return;
    sub.refs = Math.max(0, sub.refs - 1);
    if (sub.refs === 0) {
      sub.stop?.();
      sub.stop = undefined;
      sub.live = false;
    }
  }

  private startSub(sub: Sub, conn: Connection): void {
    sub.stop?.();
    // A watch resumed with a cursor gets only what changed since, possibly nothing: it is live
    // at once. A new one is live once its snapshot arrives.
    sub.live = sub.since !== undefined;
    const generation = this.generation;
    sub.stop = conn.watch(sub.path, sub.since, {
      next: (event) => {
        if (generation !== this.generation || this.subs.get(sub.key) !== sub) return;
        this.onEvent(sub, event);
      },
      error: (error) => {
        if (generation !== this.generation) return;
        if (error instanceof ServerError && error.code === "BAD_USER_INPUT" && sub.since !== undefined) {
          // The server never issued this cursor (e.g. its store was reset): start over.
          sub.since = undefined;
          this.startSub(sub, conn);
          return;
        }
        // Anything else ends the connection's usefulness for this watch: reconnect.
        this.dropConnection(error);
      },
    });
  }

  /**
   * Events are applied in batches: everything that arrived in one turn of the event loop is
   * applied to one copy-on-write draft of the replica, so a burst of changes under a large
   * subtree copies it once, not once per change.
   */
  private inbox: { sub: Sub; event: WireEvent }[] = [];

  private onEvent(sub: Sub, event: WireEvent): void {
    this.inbox.push({ sub, event });
    if (this.inbox.length === 1) (globalThis.setImmediate ?? setTimeout)(() => this.applyInbox());
  }

  private applyInbox(): void {
    const batch = this.inbox;
    this.inbox = [];
    if (this.closed) return;
    const owned = new WeakSet<object>();
    let tree = this.confirmed;
    let stored = false;
    for (const { sub, event } of batch) {
      if (this.subs.get(sub.key) !== sub) continue;
      const version = Number(event.version);
      if (!event.snapshot && sub.since !== undefined && version <= Number(sub.since)) continue;
      if (event.snapshot) {
        const value = getNode(applyMutation(emptyTree(), { merge: event.merge, delete: event.delete }), sub.path);
        tree = replaceAt(tree, sub.path, value);
      } else tree = applyOwned(tree, { merge: event.merge, delete: event.delete }, owned);
      sub.since = event.version;
      sub.live = true;
      this.attempt = 0;
      if (this.options.subscriptions && sub.key === keyOf(this.options.subscriptions)) stored = true;
    }
    this.confirmed = tree;
    this.settle();
    this.recompute();
    this.saveReplicaSoon();
    this.updateStatus();
    if (stored) this.followStoredSubscriptions();
  }

  /** Stored subscriptions: every child of the node whose value is a list of keys is a path to watch. */
  private followStoredSubscriptions(): void {
    const node = getNode(this.confirmed, this.options.subscriptions as Path);
    const wanted = new Map<string, Path>();
    if (isTree(node)) {
      for (const k in node) {
        const v = node[k];
        if (Array.isArray(v) && v.every((x) => typeof x === "string" && x.length > 0)) wanted.set(keyOf(v as string[]), v as string[]);
      }
    }
    for (const [key, path] of wanted) {
      if (!this.storedSubs.has(key)) {
        this.storedSubs.add(key);
        this.retain(path);
      }
    }
    for (const key of [...this.storedSubs]) {
      if (!wanted.has(key)) {
        this.storedSubs.delete(key);
        this.release(JSON.parse(key) as string[]);
      }
    }
  }

  /** Drops committed writes that every watch they touch has delivered. */
  private settle(): void {
    const before = this.queue.length;
    const lost: PendingWrite[] = [];
    this.queue = this.queue.filter((w) => {
      if (!w.committed) return true;
      const { version, mutation } = w.committed;
      // A write that lost parts waits until the watches over those parts show the winner (the
      // commit's version is at least the winner's), so the conflict can report it.
      const relevant = w.committed.lost?.length ? { merge: w.merge, delete: w.delete } : mutation;
      for (const sub of this.subs.values()) {
        if (sub.refs === 0) continue; // dormant: it catches up (and resyncs) when watched again
        if (restrict(relevant, sub.path) === null) continue;
        if (sub.since === undefined || Number(sub.since) < version) return true;
      }
      if (w.committed.lost?.length) lost.push(w);
      return false;
    });
    for (const w of lost) this.reportConflict(w);
    if (this.queue.length !== before) {
      this.saveQueue();
      this.pending.set(this.queue.length);
    }
  }

  /** Rebuilds the visible replica: confirmed data with every queued write applied in order. */
  private recompute(): void {
    let tree = this.confirmed;
    for (const w of this.queue) tree = applyMutation(tree, { merge: w.merge, delete: w.delete });
    this.setVisible(tree);
    this.pending.set(this.queue.length);
  }

  private reportConflict(w: PendingWrite): void {
    if (this.conflictListeners.size === 0) return;
    const winners = w.committed?.winners ?? [];
    const lost = (w.committed?.lost ?? []).map((path, i) => ({
      path,
      local: getNode(applyMutation(emptyTree(), { merge: w.merge, delete: emptyTree() as DeleteTree }), path),
      winner: getNode(this.confirmed, path),
      winnerTs: winners[i] ?? undefined,
    }));
    let winnerTs: string | undefined;
    for (const part of lost) if (part.winnerTs !== undefined && (winnerTs === undefined || part.winnerTs > winnerTs)) winnerTs = part.winnerTs;
    const conflict: Conflict = { write: { ...w }, lost, ts: w.ts, winnerTs };
    for (const l of [...this.conflictListeners]) callListener(l, conflict);
  }

  private setVisible(tree: Tree): void {
    this.visible = tree;
    for (const hook of [...this.visibleHooks]) hook(tree);
    for (const entry of [...this.listeners]) {
      if (!entry.active || !this.listeners.has(entry)) continue;
      const value = getNode(tree, entry.path);
      // Unchanged subtrees keep their identity (applyMutation copies only the paths it touches).
      if (value === entry.last) continue;
      entry.last = value;
      callListener(entry.fn, value);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  /**
   * Merges `value` at `path`: applied locally at once, sent now or when back online.
   * Input the server would refuse whatever its data (null, non-JSON values, bad keys, too deep,
   * too large) throws a KoraError with the contract's code at once and queues nothing.
   */
  merge(path: Path, value: unknown): Promise<PendingWrite> {
    return this.write(checked(mergeAt(path, value, this.limits), this.limits));
  }

  /** Deletes the subtree at `path` (same rules as `merge`). */
  delete(path: Path): Promise<PendingWrite> {
    return this.write(checked(deleteAt(path, this.limits), this.limits));
  }

  /** Deletes then merges, atomically: `{ merge, delete }` rooted at `[]` (same rules as `merge`). */
  mutate(input: { merge?: unknown; delete?: unknown }): Promise<PendingWrite> {
    return this.write(checked(mutationFromInput(input, this.limits), this.limits));
  }

  /**
   * Queues a normalized mutation. The promise resolves once the server committed it and
   * rejects with a ServerError if the server refused it (the error listeners hear it too).
   */
  private write(m: Mutation, id?: string): Promise<PendingWrite> {
    // Once loaded, a write is queued before this returns (so `queued()` shows it at once).
    const done = this.loaded ? Promise.resolve(this.enqueue(m, id)).then((p) => p) : this.ready.then(() => this.enqueue(m, id));
    done.catch(() => {});
    return done;
  }

  /** The writes not yet confirmed by the server, oldest first (copies). */
  queued(): PendingWrite[] {
    return this.queue.map((w) => ({ ...w }));
  }

  /**
   * @internal A write with a given id (createTabClient: another tab's write, which that tab may
   * hand to the next leader again): a write with an id already queued is not queued twice.
   */
  writeAs(id: string, m: Mutation): Promise<PendingWrite> {
    return this.write(checked(mutationFromInput(m, this.limits), this.limits), id);
  }

  private enqueue(m: Mutation, id?: string): PendingWrite | Promise<PendingWrite> {
    {
      if (this.closed) throw new Error("client is closed");
      const existing = id === undefined ? undefined : this.queue.find((x) => x.id === id);
      if (existing) {
        if (existing.committed) return { ...existing };
        return new Promise<PendingWrite>((resolve, reject) => {
          const prior = this.waiters.get(existing.id);
          this.waiters.set(existing.id, {
            resolve: (w) => {
              prior?.resolve(w);
              resolve(w);
            },
            reject: (e) => {
              prior?.reject(e);
              reject(e);
            },
          });
        });
      }
      const ts = this.hlc.now();
      const w: PendingWrite = { id: id ?? `${this.nodeId}-${ts.slice(0, 21)}-${++this.writeCounter}`, ts, merge: m.merge, delete: m.delete };
      if (isEmptyMutation(m)) return w;
      this.queue.push(w);
      this.setVisible(applyMutation(this.visible, m));
      this.pending.set(this.queue.length);
      this.saveQueue();
      this.updateStatus();
      const result = new Promise<PendingWrite>((resolve, reject) => this.waiters.set(w.id, { resolve, reject }));
      void this.send();
      return result;
    }
  }

  private async send(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (;;) {
        const conn = this.connection;
        if (!conn) return;
        const w = this.queue.find((x) => !x.committed);
        if (!w) return;
        let result: Awaited<ReturnType<Connection["write"]>>;
        try {
          result = await conn.write({ merge: w.merge, delete: w.delete, ts: w.ts, writeId: w.id });
        } catch (error) {
          if (this.closed) return;
          if (error instanceof ServerError && !RETRIED.has(error.code)) {
            this.reject(w, error);
            continue;
          }
          // A network failure (or a transient server one): keep the write, retry on reconnect.
          if (this.connection === conn) {
            this.dropConnection(error);
            return;
          }
          // The connection had already been replaced: its send() found this loop running and
          // returned, so the write goes again on the new connection now (or stays queued).
          continue;
        }
        // A reply for a closed instance (or an old connection) changes nothing: the next instance
        // on this storage replays the write and the server answers with this same result.
        if (this.closed || conn !== this.connection) return;
        this.attempt = 0;
        if (result.ts) this.hlc.receive(result.ts);
        const committed = { merge: result.merge, delete: result.delete };
        const lost = lostOps(w, committed).map((part) => part.path);
        const winners = lost.map((path) => winnerOfPart(path, result));
        w.committed = { version: Number(result.version), mutation: committed, ...(lost.length ? { lost, winners } : {}) };
        for (const hook of [...this.settleHooks]) hook(w.id, { write: w });
        this.waiters.get(w.id)?.resolve(w);
        this.waiters.delete(w.id);
        this.saveQueue();
        this.settle();
        this.recompute();
        this.updateStatus();
      }
    } finally {
      this.sending = false;
    }
  }

  private reject(w: PendingWrite, error: ServerError): void {
    this.queue = this.queue.filter((x) => x !== w);
    this.saveQueue();
    this.recompute();
    this.updateStatus();
    const waiter = this.waiters.get(w.id);
    this.waiters.delete(w.id);
    waiter?.reject(error);
    for (const hook of [...this.settleHooks]) hook(w.id, { error });
    for (const l of [...this.errorListeners]) callListener(l, { write: w, error });
  }

  // -------------------------------------------------------------------------------------------
  // Connecting

  /** Connects (after `disconnect()` or `startOffline`), and keeps reconnecting with backoff. */
  connect(): void {
    this.wantOnline = true;
    this.attempt = 0;
    this.afterLoad(() => this.connectNow());
  }

  /** Goes offline on purpose: closes the connection and stops reconnecting until `connect()`. */
  disconnect(): void {
    this.wantOnline = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.dropConnection(undefined, true);
  }

  private connectNow(): void {
    if (this.closed || !this.wantOnline || this.connection || this.retryTimer) return;
    const generation = ++this.generation;
    this.transport
      .connect((error) => {
        if (generation === this.generation) this.dropConnection(error);
      })
      .then(
        (conn) => {
          if (generation !== this.generation || this.closed || !this.wantOnline) {
            conn.close();
            return;
          }
          // The backoff resets once something succeeds on the connection (an event or a commit),
          // not merely on connecting: a server that accepts sockets but answers UNAVAILABLE
          // is retried with growing delays.
          this.connection = conn;
          this.connectedAt = Date.now();
          this.status.set("syncing");
          for (const sub of this.subs.values()) if (sub.refs > 0) this.startSub(sub, conn);
          void this.send();
          this.updateStatus();
        },
        () => {
          if (generation === this.generation) this.scheduleReconnect();
        },
      );
  }

  private dropConnection(_error?: unknown, quiet = false): void {
    const conn = this.connection;
    // A connection that served for a while was a success even if nothing was written or delivered.
    if (conn && Date.now() - this.connectedAt > 10_000) this.attempt = 0;
    this.connection = undefined;
    this.generation++;
    for (const sub of this.subs.values()) {
      sub.stop = undefined;
      sub.live = false;
    }
    conn?.close();
    this.status.set("offline");
    if (!quiet) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || !this.wantOnline || this.retryTimer) return;
    const { initialMs = 250, maxMs = 15_000 } = this.options.backoff ?? {};
    const base = Math.min(maxMs, initialMs * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2); // jitter
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connectNow();
    }, delay);
  }

  private updateStatus(): void {
    if (!this.connection) {
      this.status.set("offline");
      return;
    }
    const waiting = this.queue.some((w) => !w.committed) || [...this.subs.values()].some((s) => s.refs > 0 && !s.live);
    this.status.set(waiting || this.queue.length > 0 ? "syncing" : "online");
  }

  /** The watch cursors (`since` per watched path). */
  cursors(): { path: Path; since: string | undefined }[] {
    return [...this.subs.values()].map((s) => ({ path: s.path, since: s.since }));
  }

  /** Resolves once online with an empty queue and every watch delivering (or rejects on timeout). */
  async synced(timeoutMs = 10_000): Promise<void> {
    await this.ready;
    if (this.status.value === "online") return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        stop();
        reject(new Error(`not synced after ${timeoutMs} ms (status ${this.status.value}, ${this.queue.length} pending)`));
      }, timeoutMs);
      const stop = this.status.subscribe((s) => {
        if (s !== "online") return;
        clearTimeout(timer);
        queueMicrotask(() => stop());
        resolve();
      });
    });
  }

  /**
   * Stops this instance: closes the connection, persists what is not yet persisted, releases the
   * storage (another instance may open it once this resolves) and writes nothing more. Writes
   * still queued stay in storage for the next instance on it; their promises stay pending (they
   * neither resolve nor reject: the write is neither committed nor refused). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    this.wantOnline = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.dropConnection(undefined, true);
    this.waiters.clear();
    try {
      await this.ready;
    } catch {
      return; // never loaded: nothing to persist, and the lock is already released
    }
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      this.saveReplica();
    }
    await this.saves.catch(() => {});
    this.sealed = true;
    await this.releaseLock();
  }
}

/**
 * The stamp of the write that beat the lost part at `path`: the latest the server names for that
 * path (a write may delete and merge the same path), else, for a part the resolution let through
 * and an interceptor rewrote in the same commit, the commit's own stamp (null when unknown).
 */
function winnerOfPart(path: Path, result: WireResult): string | null {
  let winner: string | null = null;
  const key = keyOf(path);
  for (const part of result.lost ?? []) {
    if (keyOf(part.path) === key && (winner === null || part.winnerTs > winner)) winner = part.winnerTs;
  }
  return winner ?? result.ts ?? null;
}

/** Server errors after which a write stays queued and is retried on a later connection, with backoff. */
const RETRIED = new Set(["INTERNAL_SERVER_ERROR", "RATE_LIMITED", "UNAVAILABLE"]);

/** Creates a client; it loads its persisted state and connects in the background (`client.ready`). */
/** A mutation within the size limit (the server measures the same JSON). */
function checked(m: Mutation, limits: Limits): Mutation {
  checkMutationSize({ merge: m.merge, delete: m.delete }, limits);
  return m;
}

export function createClient(options: ClientOptions): KoraClient {
  return new KoraClient(options);
}
