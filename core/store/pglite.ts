/**
 * Embedded PostgreSQL (PGlite: PostgreSQL in WebAssembly) in a data folder, with the same SQL as
 * the server store. One process owns the folder, so the change feed is the store's own commits.
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import type { Store } from "../store.ts";
import type { Db, Queryable } from "./db.ts";
import { createSqlStore } from "./sql.ts";

export interface PgliteStoreOptions {
  /** Data folder; created when missing. Undefined keeps the database in memory (tests). */
  dataDir?: string | undefined;
  /** PostgreSQL schema holding Kora's tables. Default `kora`. */
  schema?: string;
  /**
   * An open PGlite to use instead of opening one (tests share one instance across schemas:
   * starting PGlite takes seconds). The store does not close it.
   */
  pglite?: PGlite;
}

function queryable(q: Pick<PGlite, "query" | "exec">): Queryable {
  return {
    async query<T>(sql: string, params?: unknown[]) {
      return (await q.query<T>(sql, params)).rows;
    },
    async exec(sql: string) {
      await q.exec(sql);
    },
  };
}

export async function createPgliteStore(options: PgliteStoreOptions = {}): Promise<Store> {
  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir);
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const shared = options.pglite;
  const pglite = shared ?? (dataDir ? new PGlite(dataDir) : new PGlite());
  await pglite.waitReady;
  const db: Db = {
    ...queryable(pglite),
    // Inside a transaction only the transaction handle may be used: PGlite has one connection.
    transaction: (fn, first) =>
      pglite.transaction(async (tx) => {
        const q = queryable(tx);
        return fn(q, first === undefined ? [] : await q.query(first));
      }),
    close: async () => {
      if (!shared) await pglite.close();
    },
  };
  return createSqlStore({
    db,
    schema: options.schema ?? "kora",
    kind: "pglite",
    description: dataDir ? `embedded PostgreSQL (PGlite) in ${options.dataDir}` : "embedded PostgreSQL (PGlite) in memory",
    onClose: () => db.close(),
  });
}
