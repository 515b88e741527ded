/**
 * Server PostgreSQL through `pg`: a pool for reads and commits, and one dedicated connection that
 * LISTENs for other processes' commits. A notification carries only a version; a listener that
 * reconnects re-announces the current version, because notifications sent while it was away are
 * lost (the watch hub then reads the log from its own cursor).
 */
import pg from "pg";
import type { ChangeFeed, Store } from "../store.ts";
import type { Version } from "../types.ts";
import { CommitOutcomeUnknown, type Db, ident, type Queryable } from "./db.ts";
import { channelFor, createSqlStore } from "./sql.ts";

export interface PostgresStoreOptions {
  /** Connection string, e.g. postgres://user@host:5432/db. */
  url: string;
  /** PostgreSQL schema holding Kora's tables. Default `kora`. */
  schema?: string;
  /** Most pooled connections. Default 10. */
  poolSize?: number;
  /** Called when the LISTEN connection fails (it reconnects by itself). */
  onError?: (error: unknown) => void;
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

function listenFeed(
  url: string,
  schema: string,
  currentVersion: () => Promise<Version>,
  onError?: (e: unknown) => void,
) {
  const channel = channelFor(schema);
  const listeners = new Set<(v: Version) => void>();
  // The connection in use or being opened. Every handler checks it, so a connection that failed
  // (error and end both fire) is retried once, and one that close() ended is never retried.
  let current: pg.Client | undefined;
  let stopped = false;
  let delay = 100;
  let timer: NodeJS.Timeout | undefined;
  const emit = (v: Version) => {
    for (const l of listeners) l(v);
  };

  async function connect(): Promise<void> {
    timer = undefined;
    if (stopped) return;
    const c = new pg.Client({ connectionString: url, application_name: listenerName(schema) });
    current = c;
    c.on("notification", (msg) => {
      if (msg.channel === channel && msg.payload) emit(Number(msg.payload));
    });
    c.on("error", (error) => retry(c, error));
    c.on("end", () => retry(c, new Error("LISTEN connection ended")));
    try {
      await c.connect();
      await c.query(`LISTEN ${ident(channel)}`);
      const version = await currentVersion();
      if (current !== c) return;
      delay = 100;
      // Notifications sent while no connection listened are lost: announce the current version,
      // and the watch hub reads the log from its own cursor.
      emit(version);
    } catch (error) {
      retry(c, error);
    }
  }

  function retry(c: pg.Client, error: unknown): void {
    if (current !== c) return;
    current = undefined;
    c.end().catch(() => {});
    if (stopped) return;
    onError?.(error);
    const wait = delay;
    delay = Math.min(delay * 2, 5000);
    timer = setTimeout(() => void connect(), wait);
    timer.unref();
  }

  const feed: ChangeFeed = {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return {
    feed,
    start: connect,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      const c = current;
      current = undefined;
      if (c) await c.end().catch(() => {});
    },
  };
}

export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const schema = options.schema ?? "kora";
  const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10 });
  pool.on("error", (error) => options.onError?.(error)); // idle client errors must not crash the process
  const db: Db = {
    ...queryable(pool),
    async transaction(fn, first) {
      const client = await pool.connect();
      let failed: Error | undefined;
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
          // connection broke) leaves the outcome unknown.
          throw typeof (error as { code?: unknown }).code === "string" ? error : new CommitOutcomeUnknown(error);
        }
        return result;
      } catch (error) {
        // A connection that cannot even roll back is broken: release(error) discards it.
        await client.query("ROLLBACK").catch((e: Error) => {
          failed = e;
        });
        throw error;
      } finally {
        client.release(failed);
      }
    },
    close: () => pool.end(),
  };
  let store: Store | undefined;
  const listener = listenFeed(options.url, schema, () => (store ? store.version() : Promise.resolve(0)), options.onError);
  store = await createSqlStore({
    db,
    schema,
    kind: "postgres",
    overlap: true,
    description: describe(options.url),
    remoteFeed: listener.feed,
    stats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    onClose: async () => {
      await listener.stop();
      await pool.end();
    },
  });
  await listener.start();
  return store;
}
