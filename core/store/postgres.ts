/**
 * Server PostgreSQL through `pg`: a pool for reads and commits, and one dedicated connection that
 * LISTENs for other processes' commits. A notification carries only a version; a listener that
 * reconnects re-announces the current version, because notifications sent while it was away are
 * lost (the watch hub then reads the log from its own cursor).
 */
import pg from "pg";
import type { ChangeFeed, Store } from "../store.ts";
import type { Version } from "../types.ts";
import type { Db, Queryable } from "./db.ts";
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
    async query<T>(sql: string, params?: unknown[]) {
      return (await q.query(sql, params)).rows as T[];
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

function listenFeed(url: string, channel: string, currentVersion: () => Promise<Version>, onError?: (e: unknown) => void) {
  const listeners = new Set<(v: Version) => void>();
  let client: pg.Client | undefined;
  let stopped = false;
  let delay = 100;
  const emit = (v: Version) => {
    for (const l of listeners) l(v);
  };

  async function connect(): Promise<void> {
    if (stopped) return;
    const c = new pg.Client({ connectionString: url });
    c.on("notification", (msg) => {
      if (msg.channel === channel && msg.payload) emit(Number(msg.payload));
    });
    c.on("error", (error) => {
      onError?.(error);
      reconnect(c);
    });
    c.on("end", () => reconnect(c));
    try {
      await c.connect();
      await c.query(`LISTEN "${channel}"`);
      client = c;
      delay = 100;
      emit(await currentVersion()); // anything committed while we were not listening
    } catch (error) {
      onError?.(error);
      reconnect(c);
    }
  }

  function reconnect(c: pg.Client): void {
    if (stopped || (client !== c && client !== undefined)) return;
    client = undefined;
    c.removeAllListeners("end");
    c.end().catch(() => {});
    const wait = delay;
    delay = Math.min(delay * 2, 5000);
    setTimeout(() => void connect(), wait).unref();
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
      const c = client;
      client = undefined;
      if (c) {
        c.removeAllListeners("end");
        await c.end().catch(() => {});
      }
    },
  };
}

export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const schema = options.schema ?? "kora";
  const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10 });
  pool.on("error", (error) => options.onError?.(error)); // idle client errors must not crash the process
  const db: Db = {
    ...queryable(pool),
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const result = await fn(queryable(client));
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
  let store: Store | undefined;
  const listener = listenFeed(options.url, channelFor(schema), () => (store ? store.version() : Promise.resolve(0)), options.onError);
  store = await createSqlStore({
    db,
    schema,
    kind: "postgres",
    description: describe(options.url),
    remoteFeed: listener.feed,
    onClose: async () => {
      await listener.stop();
      await pool.end();
    },
  });
  await listener.start();
  return store;
}
