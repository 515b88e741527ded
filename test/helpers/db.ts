/**
 * Store targets for the suites: PGlite (always) and server PostgreSQL (when DATABASE_URL is set).
 * Every store gets a fresh, uniquely named PostgreSQL schema that `dispose()` drops, so no test
 * depends on leftovers. With KORA_REQUIRE_PG=1 a missing DATABASE_URL fails instead of skipping.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Store } from "../../core/store.ts";
import { type PgliteDatabase, createPgliteStore, createPostgresStore, openPglite } from "../../core/store/index.ts";

/** Store options a suite may set on either target. */
export interface StoreTargetOptions {
  setBasedMerges?: boolean;
  onBatch?: (how: "set-based" | "items", mutations: number) => void;
  /** Server PostgreSQL only (default 6). */
  poolSize?: number;
}

export interface StoreTarget {
  name: "pglite" | "postgres";
  create(options?: StoreTargetOptions): Promise<{
    store: Store;
    schema: string;
    /** SQL on the store's database, outside the store (its own connection on server PostgreSQL); the shared targets have it. */
    query?(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
    dispose(): Promise<void>;
  }>;
}

export function uniqueSchema(): string {
  return `kora_t_${randomBytes(6).toString("hex")}`;
}

// One in-memory PGlite (in its worker thread) per test worker: starting one takes seconds;
// schemas keep tests apart.
let sharedPglite: Promise<PgliteDatabase> | undefined;

/** This test worker's shared in-memory PGlite (stores on it need their own schema). */
export function sharedDatabase(): Promise<PgliteDatabase> {
  sharedPglite ??= openPglite();
  return sharedPglite;
}

export const pgliteTarget: StoreTarget = {
  name: "pglite",
  async create(options = {}) {
    const database = await sharedDatabase();
    const schema = uniqueSchema();
    const store = await createPgliteStore({ schema, database, setBasedMerges: options.setBasedMerges, onBatch: options.onBatch });
    return {
      store,
      schema,
      query: (sql, params) => database.query(sql, params),
      async dispose() {
        await store.close();
        await database.exec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      },
    };
  },
};

export function databaseUrl(): string | undefined {
  return process.env.DATABASE_URL || undefined;
}

/** A raw, connected pg client for the test database (DATABASE_URL); the caller ends it. */
export async function pgClient(url = databaseUrl()): Promise<pg.Client> {
  if (!url) throw new Error("DATABASE_URL is not set");
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/** Drops a schema through its own connection (the store's pool is closed by then). */
export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = await pgClient(url);
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

export function postgresTarget(): StoreTarget | undefined {
  const url = databaseUrl();
  if (!url) {
    if (process.env.KORA_REQUIRE_PG === "1") {
      return {
        name: "postgres",
        create: () => Promise.reject(new Error("KORA_REQUIRE_PG=1 but DATABASE_URL is not set: the PostgreSQL suites cannot run")),
      };
    }
    return undefined;
  }
  return {
    name: "postgres",
    async create(options = {}) {
      const schema = uniqueSchema();
      const store = await createPostgresStore({
        url,
        schema,
        poolSize: options.poolSize ?? 6,
        setBasedMerges: options.setBasedMerges,
        onBatch: options.onBatch,
      });
      let client: Promise<pg.Client> | undefined;
      return {
        store,
        schema,
        async query(sql, params) {
          client ??= pgClient(url);
          return (await (await client).query(sql, params)).rows;
        },
        async dispose() {
          await store.close();
          if (client) await (await client).end();
          await dropSchema(url, schema);
        },
      };
    },
  };
}

/** Every target to run a suite against: PGlite, plus server PostgreSQL when configured. */
export function storeTargets(): StoreTarget[] {
  const postgres = postgresTarget();
  return postgres ? [pgliteTarget, postgres] : [pgliteTarget];
}
