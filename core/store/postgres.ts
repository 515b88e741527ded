/**
 * Server PostgreSQL through `pg`: a pool for reads and commits, and one dedicated connection that
 * LISTENs for other processes' commits. A notification carries only a version; a listener that
 * reconnects re-announces the current version, because notifications sent while it was away are
 * lost (the watch hub then reads the log from its own cursor).
 *
 * Surviving the database (docs/operations.md): every connection has an 'error' listener (a
 * checked-out pool client has none of pg-pool's, and an unheard 'error' ends the process), every
 * wait has a deadline (connect, statement, lock, idle transaction, and a client-side query timeout
 * for a backend that is frozen or a socket that is half-open), a broken connection fails only what
 * ran on it and is discarded, and the change feed checks itself with a heartbeat: when LISTEN goes
 * deaf it polls the log's head until a new LISTEN connection works.
 */
import pg from "pg";
import { withDeadline } from "../deadline.ts";
import type { ChangeFeed, FeedState, Store, StoreHealth } from "../store.ts";
import type { Version } from "../types.ts";
import { CommitOutcomeUnknown, type Db, ident, type Queryable } from "./db.ts";
import { channelFor, createSqlStore, isUnavailable } from "./sql.ts";

/** Deadlines for talking to PostgreSQL, in milliseconds (docs/operations.md lists the defaults). */
export interface PostgresTimeouts {
  /** Opening a connection, including waiting for a free pool slot. Default 3000. */
  connectMs: number;
  /** Server-side `statement_timeout` of every statement. Default 10000. */
  statementMs: number;
  /** Server-side `lock_timeout`: the longest wait for the version lock (or any lock). Default 5000. */
  lockMs: number;
  /** Server-side `idle_in_transaction_session_timeout`: frees the locks of a vanished client. Default 15000. */
  idleInTransactionMs: number;
  /**
   * Client-side deadline of one statement's round trip, for a backend that cannot enforce its own
   * (frozen, or a half-open socket): the connection is then discarded. Default statementMs + 2000.
   */
  queryMs: number;
}

/** How the change feed checks itself, in milliseconds. */
export interface FeedTimings {
  /**
   * A heartbeat NOTIFY through the LISTEN connection every this often; one not back within this
   * starts polling at once (LISTEN is suspect). Default 500.
   */
  heartbeatMs: number;
  /** LISTEN is deaf, and replaced, when its heartbeat has not come back within this. Default 2000. */
  deafAfterMs: number;
  /** The head of the log is polled this often while LISTEN is deaf or reconnecting. Default 250. */
  pollMs: number;
  /** The head of the log is compared with what the feed announced this often, always. Default 5000. */
  checkMs: number;
}

export const DEFAULT_POSTGRES_TIMEOUTS: PostgresTimeouts = {
  connectMs: 3000,
  statementMs: 10_000,
  lockMs: 5000,
  idleInTransactionMs: 15_000,
  queryMs: 12_000,
};

export const DEFAULT_FEED_TIMINGS: FeedTimings = { heartbeatMs: 500, deafAfterMs: 2000, pollMs: 250, checkMs: 5000 };

export interface PostgresStoreOptions {
  /** Connection string, e.g. postgres://user@host:5432/db. */
  url: string;
  /** PostgreSQL schema holding Kora's tables. Default `kora`. */
  schema?: string;
  /** Most pooled connections. Default 10. */
  poolSize?: number;
  /** Deadlines; any left out take `DEFAULT_POSTGRES_TIMEOUTS` (queryMs follows statementMs). */
  timeouts?: Partial<PostgresTimeouts>;
  /** Change-feed self-checks; any left out take `DEFAULT_FEED_TIMINGS`. */
  feed?: Partial<FeedTimings>;
  /** Called when a connection fails (the store reconnects by itself). */
  onError?: (error: unknown) => void;
  /** Batches of independent merges in one set-based statement (SqlStoreOptions). Default true. */
  setBasedMerges?: boolean;
  /** SqlStoreOptions.onBatch. */
  onBatch?: (how: "set-based" | "items", mutations: number) => void;
}

function queryable(q: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<T>(sql: string, params?: unknown[], name?: string) {
      return (await (name ? q.query({ text: sql, values: params, name }) : q.query(sql, params))).rows as T[];
    },
    async exec(sql: string) {
      await q.query(sql);
    },
  };
}

function describe(url: string): string {
  try {
    const u = new URL(url);
    return `PostgreSQL at ${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return "PostgreSQL";
  }
}

/** The LISTEN connection's application_name, so operators (and tests) can find it. */
export function listenerName(schema: string): string {
  return `kora-listen:${schema}`.slice(0, 63);
}

/** Connection settings shared by the pool and the LISTEN connection. */
function connectionConfig(url: string, t: PostgresTimeouts): pg.ClientConfig {
  return {
    connectionString: url,
    connectionTimeoutMillis: t.connectMs,
    statement_timeout: t.statementMs,
    lock_timeout: t.lockMs,
    idle_in_transaction_session_timeout: t.idleInTransactionMs,
    query_timeout: t.queryMs,
    // TCP keepalive: a peer that vanished without a FIN is noticed by the kernel, not never.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
}

function listenFeed(options: {
  url: string;
  schema: string;
  timeouts: PostgresTimeouts;
  timings: FeedTimings;
  /** The head of the log, read through the pool (works while LISTEN is down). */
  head: () => Promise<Version>;
  onError?: ((e: unknown) => void) | undefined;
}) {
  const { url, schema, timings } = options;
  const channel = channelFor(schema);
  // Heartbeats travel on a channel of their own, so other processes never hear them.
  const beatChannel = `kora_hb_${process.pid}_${Math.random().toString(36).slice(2, 10)}`.slice(0, 63);
  const listeners = new Set<(v: Version) => void>();
  // The connection in use or being opened. Every handler checks it, so a connection that failed
  // (error and end both fire) is retried once, and one that close() ended is never retried.
  let current: pg.Client | undefined;
  let listening = false;
  let stopped = false;
  let attempt = 0;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let beatTimer: NodeJS.Timeout | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let checkTimer: NodeJS.Timeout | undefined;
  let beatSent = 0;
  let beatHeard = 0;
  let lastBeatAt = 0;
  let lastError: string | undefined;
  let polling = false;
  let state: FeedState = "connecting";
  const emit = (v: Version) => {
    for (const l of listeners) l(v);
  };

  async function connect(): Promise<void> {
    reconnectTimer = undefined;
    if (stopped) return;
    const c = new pg.Client({ ...connectionConfig(url, options.timeouts), application_name: listenerName(schema) });
    current = c;
    c.on("notification", (msg) => {
      if (current !== c) return;
      if (msg.channel === beatChannel) {
        beatHeard = Math.max(beatHeard, Number(msg.payload));
        lastBeatAt = Date.now();
        if (beatHeard >= beatSent && state === "listening") stopPolling();
      } else if (msg.channel === channel && msg.payload) emit(Number(msg.payload));
    });
    c.on("error", (error) => retry(c, error));
    c.on("end", () => retry(c, new Error("LISTEN connection ended")));
    try {
      await c.connect();
      await c.query(`LISTEN ${ident(channel)}; LISTEN ${ident(beatChannel)}`);
      if (current !== c) return;
      listening = true;
      attempt = 0;
      lastError = undefined;
      beatSent = beatHeard = 0;
      lastBeatAt = Date.now();
      state = "listening";
      stopPolling();
      // Notifications sent while no connection listened are lost: announce the current head,
      // and the watch hub reads the log from its own cursor.
      emit(await options.head());
    } catch (error) {
      retry(c, error);
    }
  }

  function retry(c: pg.Client, error: unknown): void {
    if (current !== c) return;
    current = undefined;
    listening = false;
    // A frozen or half-open connection would never finish a graceful end: drop its socket.
    (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    c.end().catch(() => {});
    if (stopped) return;
    lastError = error instanceof Error ? error.message : String(error);
    options.onError?.(error);
    state = "polling";
    startPolling();
    // Exponential backoff with full jitter: gateways that lost PostgreSQL together do not all
    // reconnect in the same millisecond.
    const cap = Math.min(100 * 2 ** attempt, 5000);
    attempt++;
    reconnectTimer = setTimeout(() => void connect(), Math.max(50, Math.random() * cap));
    reconnectTimer.unref();
  }

  function heartbeat(): void {
    const c = current;
    if (stopped || !c || !listening) return;
    if (beatSent > beatHeard && Date.now() - lastBeatAt > timings.deafAfterMs) {
      // A heartbeat has not come back: the backend is frozen or the socket half-open. No error
      // will ever arrive on its own; declare it dead, poll meanwhile, and open another.
      retry(c, new Error(`LISTEN connection deaf: no heartbeat for ${Date.now() - lastBeatAt} ms`));
      return;
    }
    if (beatSent > beatHeard) {
      // Late: LISTEN may have gone deaf. Poll meanwhile, so changes still arrive within pollMs.
      if (Date.now() - lastBeatAt > timings.heartbeatMs * 2) startPolling();
      return; // one heartbeat in flight at a time
    }
    beatSent++;
    c.query(`NOTIFY ${ident(beatChannel)}, '${beatSent}'`).catch((error: unknown) => retry(c, error));
  }

  async function pollOnce(): Promise<void> {
    try {
      emit(await withDeadline(options.head(), timings.pollMs * 4 + 1000, () => "polling the head of the change log took too long"));
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
  }

  function startPolling(): void {
    if (polling || stopped) return;
    polling = true;
    const tick = async () => {
      if (!polling || stopped) return;
      await pollOnce();
      if (polling && !stopped) {
        pollTimer = setTimeout(() => void tick(), timings.pollMs);
        pollTimer.unref();
      }
    };
    void tick();
  }

  function stopPolling(): void {
    polling = false;
    clearTimeout(pollTimer);
  }

  const feed: ChangeFeed = {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return {
    feed,
    health: (): Pick<StoreHealth, "feed" | "feedError"> => ({ feed: state, feedError: lastError }),
    async start() {
      beatTimer = setInterval(heartbeat, timings.heartbeatMs);
      beatTimer.unref();
      // Even a healthy LISTEN is compared with the log now and then: a missed notice costs at
      // most this long, never a gap (the hub reads the log from its cursor).
      checkTimer = setInterval(() => void pollOnce(), timings.checkMs);
      checkTimer.unref();
      await connect();
    },
    async stop() {
      stopped = true;
      clearTimeout(reconnectTimer);
      clearInterval(beatTimer);
      clearInterval(checkTimer);
      stopPolling();
      const c = current;
      current = undefined;
      if (c) await withDeadline(c.end(), 1000, () => "closing the LISTEN connection took too long").catch(() => {});
    },
  };
}

/**
 * Backoff for the pool. While the database refuses connections, every request would open one (and
 * a database coming back would meet all of them at once). After a failure to reach it, operations
 * fail at once with the same UNAVAILABLE error for a while (100 ms doubling to 2 s, with full
 * jitter), then the next ones try again; a success closes the breaker.
 */
function createBreaker() {
  let failures = 0;
  let retryAt = 0;
  let lastError = "";
  return {
    async run<T>(operation: () => Promise<T>): Promise<T> {
      const wait = retryAt - Date.now();
      if (wait > 0) throw new Error(`Connection terminated: the store could not be reached (${lastError}); the next attempt is in ${Math.ceil(wait)} ms`);
      try {
        const result = await operation();
        failures = 0;
        return result;
      } catch (error) {
        // Only failures to reach the database open the breaker; a statement's own error does not.
        const code = (error as { code?: unknown }).code;
        if (isUnavailable(error) && (typeof code !== "string" || code.startsWith("08") || code === "57P03" || code.startsWith("E"))) {
          failures++;
          lastError = error instanceof Error ? error.message : String(error);
          retryAt = Date.now() + Math.random() * Math.min(100 * 2 ** (failures - 1), 2000);
        }
        throw error;
      }
    },
  };
}

export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const schema = options.schema ?? "kora";
  const statementMs = options.timeouts?.statementMs ?? DEFAULT_POSTGRES_TIMEOUTS.statementMs;
  const timeouts: PostgresTimeouts = {
    ...DEFAULT_POSTGRES_TIMEOUTS,
    queryMs: statementMs + 2000,
    ...options.timeouts,
  };
  const timings: FeedTimings = { ...DEFAULT_FEED_TIMINGS, ...options.feed };
  const pool = new pg.Pool({
    ...connectionConfig(options.url, timeouts),
    max: options.poolSize ?? 10,
    // Every statement Kora sends reaches its tables by key or key range. A prepared read planned
    // generically right after an ANALYZE of a small table (a new tree) scans the whole table,
    // and keeps that plan as the table grows: 20 ms per read at 100,000 rows instead of 0.3 ms
    // (docs/storage.md, "Plans"). pg-pool awaits this before handing the connection out; if it
    // fails, the connection is dropped and the caller gets the error. (The functions carry the
    // same setting themselves, migration 9.)
    onConnect: async (client: pg.ClientBase) => {
      await client.query("SET enable_seqscan = off");
    },
  });
  // Idle clients' errors reach the pool; without this listener they would end the process.
  pool.on("error", (error) => options.onError?.(error));
  const breaker = createBreaker();
  const direct = queryable(pool);
  const db: Db = {
    query: (sql, params, name) => breaker.run(() => direct.query(sql, params, name)),
    exec: (sql) => breaker.run(() => direct.exec(sql)),
    async transaction(fn, first) {
      const client = await breaker.run(() => pool.connect());
      // pg-pool removes its own 'error' listener while a client is checked out; a connection that
      // dies mid-transaction emits 'error', which must fail this transaction, not the process.
      let broken: Error | undefined;
      const onError = (error: Error) => {
        broken ??= error;
        options.onError?.(error);
      };
      client.on("error", onError);
      let discard: Error | undefined;
      try {
        let rows: Record<string, unknown>[] = [];
        if (first === undefined) await client.query("BEGIN");
        else {
          // One round trip: the simple query protocol carries several statements.
          const results = (await client.query(`BEGIN; ${first}`)) as unknown as pg.QueryResult[];
          rows = results[results.length - 1]?.rows ?? [];
        }
        const result = await fn(queryable(client), rows);
        try {
          await client.query("COMMIT");
        } catch (error) {
          // A server-reported error (it has a SQLSTATE) means rolled back; anything else (the
          // connection broke, or did not answer) leaves the outcome unknown.
          discard = error as Error;
          throw typeof (error as { code?: unknown }).code === "string" ? error : new CommitOutcomeUnknown(error);
        }
        return result;
      } catch (error) {
        if (discard === undefined) {
          if (broken || (isUnavailable(error) && typeof (error as { code?: unknown }).code !== "string")) {
            // The connection is gone or hung: a ROLLBACK would wait for its own timeout. The
            // server rolls back a transaction whose connection closes.
            discard = broken ?? (error as Error);
          } else {
            // A connection that cannot even roll back is broken: release(error) discards it.
            await client.query("ROLLBACK").catch((e: Error) => {
              discard = e;
            });
          }
        }
        throw error;
      } finally {
        client.off("error", onError);
        // release(error) destroys the connection instead of returning it to the pool.
        client.release(discard ?? broken);
      }
    },
    close: () => pool.end(),
  };
  let store: Store | undefined;
  const listener = listenFeed({
    url: options.url,
    schema,
    timeouts,
    timings,
    head: () => (store ? store.version() : Promise.resolve(0)),
    onError: options.onError,
  });
  store = await createSqlStore({
    db,
    schema,
    kind: "postgres",
    overlap: true,
    setBasedMerges: options.setBasedMerges ?? true,
    onBatch: options.onBatch,
    description: describe(options.url),
    remoteFeed: listener.feed,
    health: () => ({
      ...listener.health(),
      pool: { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max: options.poolSize ?? 10 },
    }),
    stats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    onClose: async () => {
      await listener.stop();
      await pool.end();
    },
  });
  await listener.start();
  return store;
}
