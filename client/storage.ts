/**
 * Where the client keeps its replica, watch cursors and write queue between runs. A small
 * key-value interface; values are JSON. Implementations: memory (here), IndexedDB (browsers,
 * client/indexeddb.ts) and a file per key (Node, client/file.ts).
 */
import { parseJson } from "../core/store/encoding.ts";

export interface ClientStorage {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
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
  return {
    data,
    async get(key) {
      const text = data.get(key);
      return text === undefined ? undefined : parseStored(text);
    },
    async set(key, value) {
      data.set(key, JSON.stringify(value));
    },
  };
}
