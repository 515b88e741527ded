/**
 * IndexedDB storage for browsers: one object store of JSON text by key, in a database named
 * after the client (one per app and user, e.g. `kora:todo`).
 *
 * One client at a time per database: `lock()` takes the Web Lock `kora-storage:<name>` (held until
 * the client closes or the page goes away). A second client on the same database, in this tab or
 * another, is refused with a `StorageInUseError`; tabs that should share one replica use
 * `createTabClient` (client/tabs.ts), which elects one tab to own the storage.
 */
import { type ClientStorage, StorageInUseError, parseStored } from "./storage.ts";

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
    lock: () => webLock(`kora-storage:${name}`, `IndexedDB database "${name}"`),
  };
}

/**
 * Takes the Web Lock `lockName` if it is free (or, with `wait`, once it is); resolves to its release. Without the Web Locks API
 * (old browsers, some workers) there is nothing to coordinate with: no guard.
 */
export function webLock(lockName: string, what: string, wait = false): Promise<() => Promise<void>> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks) return Promise.resolve(async () => {});
  return new Promise((resolve, reject) => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    locks
      .request(lockName, wait ? {} : { ifAvailable: true }, (lock) => {
        if (!lock) {
          reject(new StorageInUseError(`${what} is open by another client (in this tab or another); close it first, or share it with createTabClient`));
          return;
        }
        resolve(async () => release());
        return held;
      })
      .catch(reject);
  });
}
