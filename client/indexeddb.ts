/**
 * IndexedDB storage for browsers: one object store of JSON text by key, in a database named
 * after the client (one per app and user, e.g. `kora:todo`).
 */
import { type ClientStorage, parseStored } from "./storage.ts";

export function indexedDbStorage(name = "kora-client", factory: IDBFactory = globalThis.indexedDB): ClientStorage {
  let db: Promise<IDBDatabase> | undefined;
  const open = () => {
    db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const req = factory.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore("kv");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return db;
  };
  const run = async <T>(mode: IDBTransactionMode, fn: (store: IDBObjectStore) => IDBRequest<T>) => {
    const d = await open();
    return new Promise<T>((resolve, reject) => {
      const tx = d.transaction("kv", mode);
      const req = fn(tx.objectStore("kv"));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  };
  return {
    async get(key) {
      const text = await run<unknown>("readonly", (s) => s.get(key));
      return typeof text === "string" ? parseStored(text) : undefined;
    },
    async set(key, value) {
      await run("readwrite", (s) => s.put(JSON.stringify(value), key));
    },
  };
}
