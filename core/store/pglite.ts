/**
 * Embedded PostgreSQL (PGlite: PostgreSQL in WebAssembly) in a data folder, with the same SQL as
 * the server store. One process owns the folder, so the change feed is the store's own commits.
 *
 * PGlite runs in a worker thread (core/store/pglite-worker.ts) behind a message channel: a big
 * statement blocks that thread, not the gateway's event loop (docs/storage.md, "PGlite").
 */
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { moduleFile } from "../module-file.ts";
import type { Store, StoreStats } from "../store.ts";
import { CommitOutcomeUnknown, type Db, type Queryable } from "./db.ts";
import { createSqlStore } from "./sql.ts";

/** An open embedded database in its worker thread; several stores (schemas) may share one. */
export interface PgliteDatabase extends Db {
  /** The data folder, or undefined in memory. */
  readonly dataDir: string | undefined;
  /** Ends the worker at once, as a crash would: pending operations fail (tests; close() is orderly). */
  terminate(): Promise<void>;
  /** Its one connection, and the operations sent to the worker and not yet answered. */
  stats(): StoreStats;
}

export interface PgliteOpenOptions {
  /** Data folder; created when missing. Undefined keeps the database in memory (tests). */
  dataDir?: string | undefined;
}

export interface PgliteStoreOptions extends PgliteOpenOptions {
  /** PostgreSQL schema holding Kora's tables. Default `kora`. */
  schema?: string;
  /**
   * An open database to use instead of opening one (`openPglite`; tests share one across schemas:
   * starting PGlite takes seconds). The store does not close it. `dataDir` is then ignored.
   */
  database?: PgliteDatabase;
  /**
   * Most leaves (and deleted ranges) written per statement; a larger batch is written by several
   * statements in its one transaction, and reads of paths it does not touch are answered between
   * them (docs/storage.md, "PGlite"). Default 2,000.
   */
  chunkLeaves?: number;
  /** Batches of independent merges in one set-based statement (SqlStoreOptions). Default true. */
  setBasedMerges?: boolean;
  /** SqlStoreOptions.onBatch. */
  onBatch?: (how: "set-based" | "items", mutations: number) => void;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: Record<string, unknown> };

/** The worker's error, with PostgreSQL's fields (`code`, `detail`, …) back on an Error. */
function revive(fields: Record<string, unknown>): Error {
  const error = new Error(String(fields.message ?? "PGlite failed"));
  for (const [key, value] of Object.entries(fields)) if (key !== "message") (error as unknown as Record<string, unknown>)[key] = value;
  return error;
}

/** Whether a failure came from the database (it has a SQLSTATE), not from the worker itself. */
const fromDatabase = (error: unknown): boolean => typeof (error as { code?: unknown })?.code === "string";

/**
 * The worker's entry. From the .ts sources (tsx, vitest), the worker registers tsx's loader before
 * importing its .ts entry (a worker does not inherit the parent's loader hooks); a compiled .js
 * build starts its .js entry directly.
 */
function startWorker(workerData: unknown): Worker {
  const here = moduleFile(import.meta.url);
  if (!here.endsWith(".ts")) return new Worker(new URL("./pglite-worker.js", here), { workerData });
  const entry = new URL("./pglite-worker.ts", here).href;
  // (require.resolve would pick the API's CommonJS build; the worker imports its ESM one.)
  const tsxPackage = createRequire(here).resolve("tsx/package.json");
  const tsx = pathToFileURL(join(dirname(tsxPackage), "dist/esm/api/index.mjs")).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

/**
 * Opens PGlite in a worker thread. If the worker fails (it crashed, ran out of memory, was
 * terminated), every pending and later operation fails with an error; none hangs.
 */
export async function openPglite(options: PgliteOpenOptions = {}): Promise<PgliteDatabase> {
  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir);
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const worker = startWorker({ dataDir });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  let nextId = 1;
  /** Set once the worker is gone: every operation then fails with it. */
  let dead: Error | undefined;
  let closing: Promise<void> | undefined;

  const fail = (error: Error) => {
    dead ??= error;
    for (const p of pending.values()) p.reject(dead);
    pending.clear();
  };
  worker.on("error", (error) => fail(new Error(`the PGlite worker failed: ${error.message}`, { cause: error })));
  worker.on("exit", (code) => fail(new Error(closing ? "the PGlite database is closed" : `the PGlite worker exited (code ${code})`)));
  worker.on("messageerror", (error) => fail(new Error("a message from the PGlite worker could not be read", { cause: error })));
  worker.on("message", (reply: Reply) => {
    const p = pending.get(reply.id);
    if (!p) return;
    pending.delete(reply.id);
    // The worker keeps the process alive only while an operation waits for it.
    if (pending.size === 0) worker.unref();
    if (reply.ok) p.resolve(reply.result);
    else p.reject(revive(reply.error));
  });

  const call = <T>(request: Record<string, unknown>, id = nextId++): Promise<T> => {
    if (dead) return Promise.reject(dead);
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.ref();
      if (id !== 0) worker.postMessage({ ...request, id });
    });
  };
  // Id 0 is the worker's "ready" (or its failure to open the database).
  await call({}, 0).catch(async (error: unknown) => {
    await worker.terminate();
    throw error;
  });

  const on = (tx: number | undefined): Queryable => ({
    query: <T>(sql: string, params?: unknown[]) => call<T[]>({ op: "query", sql, params, tx }),
    exec: (sql: string) => call<void>({ op: "exec", sql, tx }),
  });

  return {
    dataDir,
    ...on(undefined),
    async transaction(fn, first) {
      const { tx, rows } = await call<{ tx: number; rows: Record<string, unknown>[] }>({ op: "begin", first });
      let result: Awaited<ReturnType<typeof fn>>;
      try {
        result = await fn(on(tx), rows);
      } catch (error) {
        await call({ op: "end", tx, commit: false }).catch(() => {}); // (a dead worker rolled back)
        throw error;
      }
      try {
        await call({ op: "end", tx, commit: true });
      } catch (error) {
        // A COMMIT PostgreSQL refused rolled back; a worker that died meanwhile leaves it unknown.
        throw fromDatabase(error) ? error : new CommitOutcomeUnknown(error);
      }
      return result;
    },
    stats: () => ({ total: dead ? 0 : 1, idle: pending.size === 0 && !dead ? 1 : 0, waiting: Math.max(0, pending.size - 1) }),
    async terminate() {
      await worker.terminate();
    },
    close() {
      closing ??= (async () => {
        if (!dead) await call({ op: "close" }).catch(() => {});
        await worker.terminate();
      })();
      return closing;
    },
  };
}

export async function createPgliteStore(options: PgliteStoreOptions = {}): Promise<Store> {
  const shared = options.database;
  const db = shared ?? (await openPglite({ dataDir: options.dataDir }));
  const where = db.dataDir === undefined ? "in memory" : `in ${shared ? db.dataDir : options.dataDir}`;
  return createSqlStore({
    db,
    schema: options.schema ?? "kora",
    kind: "pglite",
    description: `embedded PostgreSQL (PGlite) ${where}`,
    chunkLeaves: options.chunkLeaves ?? 2000,
    setBasedMerges: options.setBasedMerges ?? true,
    onBatch: options.onBatch,
    stats: () => db.stats(),
    onClose: async () => {
      if (!shared) await db.close();
    },
  });
}
