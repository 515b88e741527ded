/**
 * The worker thread that hosts PGlite (core/store/pglite.ts starts it). PGlite runs PostgreSQL in
 * WebAssembly in the thread that calls it, and a big statement holds that thread for its whole
 * length: here it holds this worker, not the gateway's event loop.
 *
 * Protocol (one request, one reply with the same id; see `Request` and `Reply` in pglite.ts):
 * - `query`, `exec`: outside any transaction, or inside the open transaction `tx`;
 * - `begin`: opens a transaction with PGlite's `transaction()` (which holds its one connection
 *   until it ends: statements outside it wait) and replies with its id and the rows of `first`;
 * - `end`: commits (or rolls back) transaction `tx`; replies once PGlite has done so;
 * - `close`: closes the database; the thread then ends by itself.
 */
import { parentPort, workerData } from "node:worker_threads";
import { PGlite, type Transaction } from "@electric-sql/pglite";

type Request =
  | { id: number; op: "query"; sql: string; params?: unknown[] | undefined; tx?: number | undefined }
  | { id: number; op: "exec"; sql: string; tx?: number | undefined }
  | { id: number; op: "begin"; first?: string | undefined }
  | { id: number; op: "end"; tx: number; commit: boolean }
  | { id: number; op: "close" };

const port = parentPort;
if (!port) throw new Error("core/store/pglite-worker.ts runs only as a worker thread (core/store/pglite.ts starts it)");

const { dataDir } = workerData as { dataDir?: string };

/** PostgreSQL's error fields (code is the SQLSTATE core/store/sql.ts maps) survive the channel. */
function serializeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const out: Record<string, unknown> = { name: error.name, message: error.message, stack: error.stack };
  for (const [key, value] of Object.entries(error)) {
    if (value === null || ["string", "number", "boolean"].includes(typeof value)) out[key] = value;
  }
  return out;
}

interface OpenTx {
  tx: Transaction;
  /** Ends PGlite's transaction callback: resolve commits, reject rolls back. */
  finish: (commit: boolean) => void;
  /** Settles once PGlite has committed or rolled back. */
  done: Promise<void>;
}

const ROLLBACK = new Error("rolled back by the store");

async function main(): Promise<void> {
  const db = dataDir ? new PGlite(dataDir) : new PGlite();
  await db.waitReady;
  const open = new Map<number, OpenTx>();
  let nextTx = 1;

  const handle = async (req: Request): Promise<unknown> => {
    switch (req.op) {
      case "query": {
        const q = req.tx === undefined ? db : txOf(req.tx).tx;
        return (await q.query(req.sql, req.params)).rows;
      }
      case "exec": {
        const q = req.tx === undefined ? db : txOf(req.tx).tx;
        await q.exec(req.sql);
        return undefined;
      }
      case "begin": {
        const id = nextTx++;
        return new Promise((resolve, reject) => {
          let started = false;
          const done = db
            .transaction(async (tx) => {
              const rows = req.first === undefined ? [] : (await tx.query(req.first)).rows;
              const ended = new Promise<boolean>((finish) => {
                open.set(id, { tx, finish, done });
              });
              started = true;
              resolve({ tx: id, rows });
              if (!(await ended)) throw ROLLBACK;
            })
            .then(
              () => undefined,
              (error: unknown) => {
                if (!started) reject(error);
                else if (error !== ROLLBACK) throw error;
              },
            )
            .finally(() => open.delete(id));
          // A failed COMMIT is reported by `end`; nothing else waits on `done` before then.
          done.catch(() => {});
        });
      }
      case "end": {
        const t = txOf(req.tx);
        t.finish(req.commit);
        await t.done;
        return undefined;
      }
      case "close":
        for (const t of open.values()) t.finish(false);
        await db.close();
        port?.close();
        return undefined;
    }
  };

  function txOf(id: number): OpenTx {
    const t = open.get(id);
    if (!t) throw new Error(`transaction ${id} is not open in the PGlite worker`);
    return t;
  }

  port?.on("message", (req: Request) => {
    handle(req).then(
      (result) => port.postMessage({ id: req.id, ok: true, result }),
      (error: unknown) => port.postMessage({ id: req.id, ok: false, error: serializeError(error) }),
    );
  });
  port?.postMessage({ id: 0, ok: true, result: "ready" });
}

main().catch((error: unknown) => {
  // Opening failed (a damaged data folder, …): the main thread fails every waiting operation.
  port.postMessage({ id: 0, ok: false, error: serializeError(error) });
  port.close();
});
