/**
 * Where the client keeps its replica, watch cursors and write queue between runs. A small
 * key-value interface; values are JSON. Implementations: memory (here), IndexedDB (browsers,
 * client/indexeddb.ts) and a file per key (Node, client/file.ts).
 */
import { parseJson } from "../core/store/encoding.ts";

export interface ClientStorage {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
  /**
   * Takes the storage for one client instance (one writer per storage location): resolves to a
   * release function, or rejects with a `StorageInUseError` while another instance (in this
   * process or another) holds it. A client calls it before reading anything and releases it when
   * `close()` resolves. Storages without it are not guarded.
   */
  lock?(): Promise<() => Promise<void>>;
}

/** Another client instance holds this storage: close it first (or give this one its own storage). */
export class StorageInUseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StorageInUseError";
  }
}

/** JSON.parse giving null-prototype objects, so keys like `__proto__` stay plain data (the store's own). */
export function parseStored(text: string): unknown {
  return parseJson(text);
}

/**
 * Memory storage. Values are kept as JSON text, so a client created again over the same storage
 * behaves exactly like one restarted over a persistent one (tests use it that way).
 */
export function memoryStorage(): ClientStorage & { readonly data: Map<string, string> } {
  const data = new Map<string, string>();
  let held = false;
  return {
    data,
    async get(key) {
      const text = data.get(key);
      return text === undefined ? undefined : parseStored(text);
    },
    async set(key, value) {
      data.set(key, JSON.stringify(value));
    },
    async lock() {
      if (held) throw new StorageInUseError("this memory storage is open by another client; close that client first");
      held = true;
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        held = false;
      };
    },
  };
}
