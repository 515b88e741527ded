/**
 * Many tabs, one replica (docs/client.md, "Tabs"). Tabs of one origin that share an IndexedDB
 * replica elect one leader with a Web Lock (`kora-leader:<name>`): the leader runs the one
 * KoraClient, the one WebSocket and the only writer of the storage; the other tabs read and write
 * through it over a BroadcastChannel (`kora-tabs:<name>`). Every tab sees every tab's writes as
 * soon as the leader applied them. When the leader tab closes, its lock is released, the next tab
 * in line becomes leader, loads the queue from IndexedDB and replays it; writes another tab sent
 * that the old leader had not yet stored are sent again by that tab, under the same write id, so
 * nothing is lost and nothing is applied twice (the queue and the server deduplicate by id).
 */
import {
  applyMutation,
  deleteAt,
  emptyTree,
  getNode,
  mergeAt,
  mutationFromInput,
} from "../core/tree.ts";
import type { Mutation, Node, Path, Tree } from "../core/types.ts";
import {
  type ClientOptions,
  type Conflict,
  KoraClient,
  callListener,
  observable,
  type PendingWrite,
  type Status,
  type WriteError,
} from "./client.ts";
import { indexedDbStorage, webLock } from "./indexeddb.ts";
import { ServerError } from "./transport.ts";

export interface TabClientOptions extends Omit<ClientOptions, "storage"> {
  /** The replica's name: the IndexedDB database, the lock and the channel are named after it. */
  name: string;
}

type Message =
  | { t: "hello"; tab: string }
  | { t: "leader"; tab: string }
  | { t: "state"; tree: Tree; status: Status; pending: number }
  | { t: "watch"; tab: string; key: string; path: Path }
  | { t: "unwatch"; tab: string; key: string }
  | { t: "write"; tab: string; id: string; m: Mutation }
  | { t: "stored"; id: string }
  | { t: "settled"; id: string; write?: PendingWrite; error?: { code: string; message: string } }
  | { t: "connect" }
  | { t: "disconnect" }
  | { t: "bye"; tab: string };

const same = (a: Node | undefined, b: Node | undefined) =>
  a === b || JSON.stringify(a) === JSON.stringify(b);

/**
 * A client shared by the tabs of one origin. Same reading and writing API as `KoraClient`;
 * `leader` tells whether this tab holds the connection.
 */
export class TabClient {
  readonly status = observable<Status>("offline");
  readonly pending = observable<number>(0);
  readonly leader = observable<boolean>(false);
  readonly ready: Promise<void>;

  private readonly tab = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
  private readonly channel: BroadcastChannel;
  private inner: KoraClient | undefined;
  private tree: Tree = emptyTree();
  private counter = 0;
  /** This tab's writes not yet stored by a leader: sent again to every new leader. */
  private readonly unstored = new Map<string, Mutation>();
  private readonly waiters = new Map<
    string,
    { resolve: (w: PendingWrite) => void; reject: (e: unknown) => void }
  >();
  private readonly listeners = new Set<{
    key: string;
    path: Path;
    fn: (v: Node | undefined) => void;
    last: Node | undefined;
  }>();
  private readonly errorListeners = new Set<(e: WriteError) => void>();
  private readonly conflictListeners = new Set<(c: Conflict) => void>();
  /** Leader only: the watches of every tab, by tab and path key, each kept by one inner watch. */
  private readonly remoteWatches = new Map<string, () => void>();
  private releaseLeadership: (() => void) | undefined;
  private closed = false;
  private markReady!: () => void;
  private fail!: (error: unknown) => void;
  private wantOnline: boolean;

  constructor(private readonly options: TabClientOptions) {
    this.wantOnline = !options.startOffline;
    this.ready = new Promise((resolve, reject) => {
      this.markReady = resolve;
      this.fail = reject;
    });
    this.ready.catch(() => {});
    this.channel = new BroadcastChannel(`kora-tabs:${options.name}`);
    this.channel.onmessage = (e: MessageEvent<Message>) => this.receive(e.data);
    this.post({ t: "hello", tab: this.tab });
    // Until this tab leads, the leader (if any) answers `hello` with its state.
    const locks = navigator.locks;
    locks
      .request(`kora-leader:${options.name}`, () => {
        if (this.closed) return undefined;
        return new Promise<void>((release) => {
          this.releaseLeadership = release;
          this.lead().catch((error: unknown) => {
            // The storage could not be loaded (damaged, or held by a client outside the group):
            // this tab cannot lead. `ready` carries the error; the lock goes to the next tab.
            this.inner = undefined;
            this.fail(error);
            release();
          });
        });
      })
      .catch(() => {});
  }

  private post(m: Message): void {
    if (!this.closed) this.channel.postMessage(m);
  }

  // -------------------------------------------------------------------------------------------
  // Leading

  private async lead(): Promise<void> {
    // The storage lock of a leader that just went away (a closed or reloading tab) may be released
    // a moment after its leadership: the new leader waits for it rather than being refused.
    const name = this.options.name;
    const storage = {
      ...indexedDbStorage(name),
      lock: () => webLock(`kora-storage:${name}`, `IndexedDB database "${name}"`, true),
    };
    const inner = new KoraClient({ ...this.options, storage, startOffline: !this.wantOnline });
    this.inner = inner;
    inner.observeVisible((tree) => this.broadcastState(tree));
    inner.status.subscribe(() => this.broadcastState());
    inner.pending.subscribe(() => this.broadcastState());
    inner.observeSettled((id, result) => {
      const message: Message =
        "write" in result
          ? { t: "settled", id, write: result.write }
          : { t: "settled", id, error: { code: result.error.code, message: result.error.message } };
      this.post(message);
      this.settled(message);
    });
    inner.onError((e) => {
      for (const l of [...this.errorListeners]) callListener(l, e);
    });
    inner.onConflict((c) => {
      for (const l of [...this.conflictListeners]) callListener(l, c);
    });
    await inner.ready;
    this.leader.set(true);
    for (const entry of this.listeners) this.remoteWatch(this.tab, entry.key, entry.path);
    for (const [id, m] of this.unstored) void this.store(this.tab, id, m);
    this.post({ t: "leader", tab: this.tab });
    this.broadcastState(inner.get([]) as Tree);
    this.markReady();
  }

  private broadcastState(tree?: Tree): void {
    const inner = this.inner;
    if (!inner || this.closed) return;
    const state: Message = {
      t: "state",
      tree: tree ?? (inner.get([]) as Tree | undefined) ?? emptyTree(),
      status: inner.status.value,
      pending: inner.pending.value,
    };
    this.post(state);
    this.applyState(state);
  }

  private remoteWatch(tab: string, key: string, path: Path): void {
    const id = `${tab} ${key}`;
    if (this.remoteWatches.has(id) || !this.inner) return;
    this.remoteWatches.set(
      id,
      this.inner.watch(path, () => {}),
    );
  }

  /** Queues another tab's (or this tab's) write under its id, then tells the tabs it is stored. */
  private async store(tab: string, id: string, m: Mutation): Promise<void> {
    const inner = this.inner;
    if (!inner) return;
    const done = inner.writeAs(id, m);
    done.catch(() => {});
    await inner.flush();
    const stored: Message = { t: "stored", id };
    if (tab === this.tab) this.unstored.delete(id);
    else this.post(stored);
  }

  // -------------------------------------------------------------------------------------------
  // Messages

  private receive(m: Message): void {
    if (this.closed) return;
    const leading = this.inner !== undefined;
    switch (m.t) {
      case "hello":
        if (leading) {
          this.post({ t: "leader", tab: this.tab });
          this.broadcastState();
        }
        break;
      case "leader":
        // A new leader: hand it this tab's watches and every write it may not have stored.
        for (const entry of this.listeners)
          this.post({ t: "watch", tab: this.tab, key: entry.key, path: entry.path });
        for (const [id, mutation] of this.unstored)
          this.post({ t: "write", tab: this.tab, id, m: mutation });
        break;
      case "state":
        if (!leading) this.applyState(m);
        break;
      case "watch":
        if (leading) this.remoteWatch(m.tab, m.key, m.path);
        break;
      case "unwatch":
        if (leading) {
          const id = `${m.tab} ${m.key}`;
          this.remoteWatches.get(id)?.();
          this.remoteWatches.delete(id);
        }
        break;
      case "bye":
        if (leading) {
          for (const [id, stop] of [...this.remoteWatches]) {
            if (id.startsWith(`${m.tab} `)) {
              stop();
              this.remoteWatches.delete(id);
            }
          }
        }
        break;
      case "write":
        if (leading) void this.store(m.tab, m.id, m.m);
        break;
      case "stored":
        if (this.unstored.delete(m.id)) this.applyState();
        break;
      case "settled":
        if (!leading) this.settled(m);
        break;
      // Going offline or online on purpose is the group's choice: a tab that leads later follows it.
      case "connect":
        this.wantOnline = true;
        if (leading) this.inner?.connect();
        break;
      case "disconnect":
        this.wantOnline = false;
        if (leading) this.inner?.disconnect();
        break;
    }
  }

  private settled(m: Extract<Message, { t: "settled" }>): void {
    const waiter = this.waiters.get(m.id);
    if (!waiter) return;
    this.waiters.delete(m.id);
    this.unstored.delete(m.id);
    if (m.write) waiter.resolve(m.write);
    else if (m.error) {
      const error = new ServerError(m.error.code, m.error.message);
      waiter.reject(error);
      if (!this.inner)
        for (const l of [...this.errorListeners])
          callListener(l, { write: { id: m.id, ts: "", merge: {}, delete: {} }, error });
    }
  }

  /** The leader's replica with this tab's writes the leader has not stored yet on top. */
  private applyState(state?: Extract<Message, { t: "state" }>): void {
    if (state) {
      this.tree = state.tree;
      this.status.set(state.status);
    }
    let view = this.tree;
    if (!this.inner) for (const m of this.unstored.values()) view = applyMutation(view, m);
    this.view = view;
    this.pending.set((state?.pending ?? this.lastPending) + (this.inner ? 0 : this.unstored.size));
    if (state) this.lastPending = state.pending;
    for (const entry of [...this.listeners]) {
      const value = getNode(view, entry.path);
      if (same(value, entry.last)) continue;
      entry.last = value;
      callListener(entry.fn, value);
    }
    if (!this.inner && !this.readied) {
      this.readied = true;
      this.markReady();
    }
  }
  private view: Tree = emptyTree();
  private lastPending = 0;
  private readied = false;

  // -------------------------------------------------------------------------------------------
  // The API (as KoraClient's)

  get(path: Path): Node | undefined {
    return getNode(this.view, path);
  }

  watch(path: Path, listener: (value: Node | undefined) => void): () => void {
    const key = JSON.stringify(path);
    const entry = { key, path: [...path], fn: listener, last: undefined as Node | undefined };
    this.listeners.add(entry);
    if (this.inner) this.remoteWatch(this.tab, key, path);
    else this.post({ t: "watch", tab: this.tab, key, path: [...path] });
    void this.ready.then(() => {
      if (!this.listeners.has(entry)) return;
      entry.last = this.get(path);
      callListener(listener, entry.last);
    });
    return () => {
      if (!this.listeners.delete(entry)) return;
      if ([...this.listeners].some((e) => e.key === key)) return;
      if (this.inner) this.receive({ t: "unwatch", tab: this.tab, key });
      else this.post({ t: "unwatch", tab: this.tab, key });
    };
  }

  merge(path: Path, value: unknown): Promise<PendingWrite> {
    return this.write(mergeAt(path, value));
  }

  delete(path: Path): Promise<PendingWrite> {
    return this.write(deleteAt(path));
  }

  mutate(input: { merge?: unknown; delete?: unknown }): Promise<PendingWrite> {
    return this.write(mutationFromInput(input));
  }

  private write(m: Mutation): Promise<PendingWrite> {
    if (this.closed) return Promise.reject(new Error("client is closed"));
    const id = `${this.tab}-${++this.counter}`;
    const done = new Promise<PendingWrite>((resolve, reject) =>
      this.waiters.set(id, { resolve, reject }),
    );
    done.catch(() => {});
    if (this.inner) {
      const inner = this.inner;
      this.waiters.delete(id);
      return inner.writeAs(id, m);
    }
    this.unstored.set(id, m);
    this.applyState();
    this.post({ t: "write", tab: this.tab, id, m });
    return done;
  }

  onError(listener: (e: WriteError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  onConflict(listener: (c: Conflict) => void): () => void {
    this.conflictListeners.add(listener);
    return () => this.conflictListeners.delete(listener);
  }

  /** The leader's queue (in the leader tab), or this tab's writes not yet stored by a leader. */
  queued(): { id: string; merge: Tree; delete: unknown }[] {
    if (this.inner) return this.inner.queued();
    return [...this.unstored].map(([id, m]) => ({ id, merge: m.merge, delete: m.delete }));
  }

  /** Connects the group (whichever tab leads). */
  connect(): void {
    this.wantOnline = true;
    this.inner?.connect();
    this.post({ t: "connect" });
  }

  /** Takes the group offline on purpose, until `connect()` in any tab. */
  disconnect(): void {
    this.wantOnline = false;
    this.inner?.disconnect();
    this.post({ t: "disconnect" });
  }

  /** Resolves once online (the leader's connection) with nothing pending. */
  async synced(timeoutMs = 10_000): Promise<void> {
    await this.ready;
    if (this.status.value === "online" && this.pending.value === 0) return;
    await new Promise<void>((resolve, reject) => {
      let stopStatus = () => {};
      let stopPending = () => {};
      const check = () => {
        if (this.status.value !== "online" || this.pending.value !== 0) return;
        clearTimeout(timer);
        queueMicrotask(() => {
          stopStatus();
          stopPending();
        });
        resolve();
      };
      const timer = setTimeout(() => {
        stopStatus();
        stopPending();
        reject(new Error(`not synced after ${timeoutMs} ms`));
      }, timeoutMs);
      stopStatus = this.status.subscribe(check);
      stopPending = this.pending.subscribe(check);
    });
  }

  /**
   * Leaves the group: a leader closes its client (the queue stays in IndexedDB) and hands over;
   * a follower's writes not yet stored by the leader are lost unless another tab leads by then.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.post({ t: "bye", tab: this.tab });
    this.closed = true;
    this.channel.close();
    await this.inner?.close();
    this.releaseLeadership?.();
  }
}

export function createTabClient(options: TabClientOptions): TabClient {
  return new TabClient(options);
}
