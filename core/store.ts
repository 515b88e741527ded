/**
 * The storage boundary. Two implementations share one SQL dialect and one JSONB schema:
 * server PostgreSQL through `pg` (core/store/postgres.ts) and embedded PostgreSQL through PGlite
 * (core/store/pglite.ts). See docs/storage.md for the schema and the versioning design.
 */
import type { Stamp } from "./hlc.ts";
import type { LostPart, StampEntries, StampQuery, Tomb } from "./lww.ts";
import type { Change, KeysOptions, KeysResult, Leaf, Mutation, Node, Path, ReadOptions, Version } from "./types.ts";

export type { ChildSummary, KeysOptions, KeysResult, NodeType } from "./types.ts";

export interface ReadRequest {
  path: Path;
  options?: ReadOptions | undefined;
}

export interface ReadResult {
  /** The version of the last mutation these values include: all values come from one snapshot. */
  version: Version;
  /** One entry per request, in order; `undefined` when nothing is stored there. */
  values: (Node | undefined)[];
}

/** What a mutation's builder may do inside the write transaction. */
export interface WriteContext {
  /**
   * Reads through the open write transaction: committed data plus the writes of mutations
   * committed earlier in the same batch, never anything of the mutation being built.
   */
  read(path: Path, options?: ReadOptions): Promise<Node | undefined>;
  /**
   * Records side-effect tasks in the outbox, in the same transaction as the mutation (stores
   * with an `outbox` only). Tasks of a mutation that aborts are never recorded.
   */
  enqueue?(task: OutboxTaskInput): void;
  /**
   * Per-leaf timestamps, tombstones and write ids for offline clients' conflict resolution
   * (docs/conflicts.md; stores that keep them). Used by core/conflicts.ts.
   */
  stamps?: WriteStamps;
}

/** What a builder may do with timestamps inside the write transaction. */
export interface WriteStamps {
  /** The greatest stamp the store has recorded (read under the version lock), if any. */
  readonly clock: Stamp | undefined;
  /** Stamps and tombstones at the paths `query` names, as committed so far. */
  read(query: StampQuery): Promise<StampEntries>;
  /** The committed change of an earlier write with this id, while its change-log row is kept. */
  prior(writeId: string): Promise<(Change & { ts?: Stamp | undefined }) | undefined>;
  /** How to record the mutation being built. Call at most once. */
  record(record: WriteRecord): void;
}

/**
 * How the store records a stamped mutation: every merged leaf gets `ts`; every delete path not in
 * `covered` leaves a tombstone (cover `ts`, shadow the newest stamp it removes); every leaf that a
 * merged leaf replaces at an ancestor path leaves a tombstone with its own stamp; `tombstones` are
 * added; the store's clock moves to `ts` if later. See core/lww.ts (`finalize` is the same rule).
 */
export interface WriteRecord {
  ts: Stamp;
  /** Tombstones from the resolution: path key (core/store/encoding.ts) -> stamps. */
  tombstones: Map<string, Tomb>;
  /** Delete paths (keys) that get no tombstone with `ts`: the resolution accounted for them. */
  covered: Set<string>;
  /** The client's id for this write, kept with its change-log row for idempotent retries. */
  writeId?: string | undefined;
  /** Commit nothing: the result is this earlier change (an idempotent replay). */
  replay?: (Change & { ts?: Stamp | undefined }) | undefined;
  /** The parts of the write that lost to later writes, with the winners' stamps (for the result). */
  lost?: LostPart[] | undefined;
}

/** A side-effect task to record in the outbox (docs/interceptors.md, "Effects"). */
export interface OutboxTaskInput {
  /** The interceptor whose `runEffect` performs it. */
  interceptor: string;
  /** JSON data the task needs; stored as JSONB. */
  payload: unknown;
  /** Most attempts before the task is marked failed. */
  maxAttempts: number;
}

export type OutboxState = "pending" | "running" | "done" | "failed";

export interface OutboxTask {
  id: number;
  /** The version of the mutation that recorded the task (the current version for empty ones). */
  version: number;
  interceptor: string;
  payload: unknown;
  state: OutboxState;
  attempts: number;
  maxAttempts: number;
  /** When the task may run next (pending) or when its lease ends (running). */
  nextAt: Date;
  lastError: string | null;
  createdAt: Date;
  doneAt: Date | null;
}

/**
 * The outbox of side-effect tasks, shared by every gateway process on the store. Claiming leases
 * tasks with `FOR UPDATE SKIP LOCKED`, so each run is taken by one process; a process that dies
 * mid-run leaves its lease to expire and the task runs again (at least once).
 */
export interface Outbox {
  /** Leases up to `limit` due tasks (pending, or running with an expired lease) for `leaseMs`. */
  claim(limit: number, leaseMs: number): Promise<OutboxTask[]>;
  complete(id: number): Promise<void>;
  /** Records a failed attempt: pending again at `retryAt`, or failed for good when null. */
  fail(id: number, error: string, retryAt: Date | null): Promise<void>;
  /** Tasks, newest first, optionally of one state. */
  list(options?: { state?: OutboxState; limit?: number }): Promise<OutboxTask[]>;
  /** Runs a failed task once more, now (the console's retry button). False when it is not failed. */
  retry?(id: number): Promise<boolean>;
  /** When the next pending task falls due, or undefined when none is pending. */
  nextDue(): Promise<Date | undefined>;
}

/**
 * Builds the mutation to commit, inside the write transaction (so interceptors can read
 * current data and add writes atomically). Throwing aborts this mutation only: nothing of it is
 * written or logged, and no watcher hears of it.
 */
export type BuildMutation = (tx: WriteContext) => Promise<Mutation>;

/** The outcome of a commit. `empty` mutations write nothing and carry the current version. */
export interface CommitResult extends Change {
  empty: boolean;
  /** The timestamp the mutation was recorded with (stores with timestamps). */
  ts?: Stamp | undefined;
  /** True when this is the earlier result of a write id seen before: nothing was committed now. */
  replayed?: boolean | undefined;
  /**
   * The parts of the write that lost to later writes (per-leaf last writer wins, before
   * interceptors), each with the stamp of the newest write that beat it (docs/conflicts.md).
   * Absent or empty when nothing lost.
   */
  lost?: LostPart[] | undefined;
}

/** A leaf as a snapshot streams it: its full path, value and the stamp of the write that set it. */
export interface LeafRow {
  path: Path;
  value: Leaf;
  ts: string | null;
}

/** A tombstone (docs/conflicts.md) as a snapshot streams it. */
export interface TombstoneRow {
  path: Path;
  cover: string;
  shadow: string;
}

export interface Snapshot {
  /** The version of the last mutation the snapshot includes. */
  readonly version: Version;
  /** The store's clock (greatest stamp recorded), if any. */
  readonly clock: string | undefined;
  /** The leaves at and under `path` (default the root), in tree order (bytes of keys), in pages. */
  leaves(path?: Path, pageSize?: number): AsyncIterable<LeafRow[]>;
  /** How many leaves are at and under `path` (default the root): one index-only count. */
  count(path?: Path): Promise<number>;
  /** Every tombstone, in pages. */
  tombstones(pageSize?: number): AsyncIterable<TombstoneRow[]>;
}

/** One page of a restore: leaves and tombstones, either possibly empty. */
export interface RestorePage {
  leaves: LeafRow[];
  tombstones: TombstoneRow[];
}

/** Tells listeners that the change log has grown to (at least) a version. Carries no data. */
export interface ChangeFeed {
  /** Calls `listener` with a version whenever the log may have grown; returns an unsubscribe. */
  subscribe(listener: (version: Version) => void): () => void;
}

/**
 * How the store hears of commits: `local` (only this process writes: PGlite), `listening` (a
 * healthy LISTEN connection), `connecting` (opening it), `polling` (LISTEN is down or deaf; the
 * head of the log is polled meanwhile, so changes still arrive, a little later).
 */
export type FeedState = "local" | "connecting" | "listening" | "polling";

/** What the store knows of its own connections (readiness, metrics). Reading it costs nothing. */
export interface StoreHealth {
  feed: FeedState;
  /** The last failure of the change feed, while it is not `listening`. */
  feedError?: string | undefined;
  /** Connection pool usage, for stores with a pool. */
  pool?: { total: number; idle: number; waiting: number; max: number } | undefined;
}

export interface Store {
  readonly kind: "postgres" | "pglite";
  /** A short human description for start-up logs, e.g. `PGlite at ./.kora` (no secrets). */
  readonly description: string;
  /** Reads several subtrees in one round trip and one snapshot. */
  read(requests: readonly ReadRequest[]): Promise<ReadResult>;
  /**
   * Lists the children of `path`, keys only: each child's key and type, and a small leaf's value,
   * without reading anything below the children (one index probe per child, whatever the size
   * of its subtree). One snapshot.
   */
  keys(path: Path, options: KeysOptions): Promise<KeysResult>;
  /**
   * Commits one mutation atomically and gives it the next version. Concurrent calls may be
   * batched into one transaction (group commit); each still gets its own version and its own
   * all-or-nothing outcome.
   */
  commit(build: BuildMutation): Promise<CommitResult>;
  /** Committed changes with version > `after`, ascending, at most `limit`. */
  changes(after: Version, limit: number): Promise<Change[]>;
  /** The version of the last committed mutation (0 for a new store). */
  version(): Promise<Version>;
  /** The oldest version still in the change log, or `undefined` when the log is empty. */
  oldestVersion(): Promise<Version | undefined>;
  /**
   * Removes change-log entries that are both older than `maxAgeMs` and more than `keep` versions
   * behind the current one. Returns how many were removed.
   */
  trim(options: { keep: number; maxAgeMs: number }): Promise<number>;
  /** Removes tombstones whose stamps are all older than `before` (the horizon). Returns how many. */
  trimTombstones?(before: Stamp): Promise<number>;
  /** Notices of new versions, from this process and (for server PostgreSQL) from every other. */
  readonly feed: ChangeFeed;
  /** The query plan of reading `path` (diagnostics and tests: a subtree read is an index range scan). */
  explain?(path: Path): Promise<string>;
  /**
   * Runs the keys listing of `path` under EXPLAIN (ANALYZE, BUFFERS) (diagnostics and tests: a
   * listing touches a few blocks per child, not its children's subtrees). `blocks` is the shared
   * buffers it touched, hit or read.
   */
  explainKeys?(path: Path, options: KeysOptions): Promise<{ plan: string; blocks: number }>;
  /** The side-effect outbox (docs/interceptors.md); absent on stores without one. */
  readonly outbox?: Outbox;
  /** The state of the store's connections and change feed (without a round trip). */
  health(): StoreHealth;
  /** The store's connections now (metrics; absent on stores without a pool). */
  stats?(): StoreStats;
  /**
   * Runs `fn` on one consistent snapshot of the whole store (backups, exports): every page it
   * reads comes from the same moment, at `version`, however long it takes and whatever commits
   * meanwhile. Pages are read on demand, so a tree larger than memory streams through.
   */
  snapshot?<T>(fn: (snapshot: Snapshot) => Promise<T>): Promise<T>;
  /**
   * Commits `mutations` in order as consecutive versions in ONE transaction (imports): all of
   * them or, on any failure, none. They are written as given: no builder, no interceptor.
   * Writers elsewhere wait for the version lock until it ends. Returns the versions given.
   */
  commitAll?(mutations: AsyncIterable<Mutation>): Promise<{ first: Version; last: Version; count: number }>;
  /**
   * Loads a snapshot (a backup) into an EMPTY store, in one transaction: its leaves with their
   * stamps, its tombstones, its clock, and the counter set to its version. Throws CONFLICT when
   * the store already holds data or versions; writes nothing on any failure.
   */
  restore?(header: { version: Version; clock: string | undefined }, pages: AsyncIterable<RestorePage>): Promise<void>;
  /** Waits for in-flight commits, then releases connections. */
  close(): Promise<void>;
}

export interface StoreStats {
  /** Connections open. */
  total: number;
  /** Connections open and not in use. */
  idle: number;
  /** Operations waiting for a connection. */
  waiting: number;
}
