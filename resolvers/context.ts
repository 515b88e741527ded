/**
 * Per-operation context. A fresh loader set per operation (and per subscription event) batches
 * every `path` field of one operation into a single store round trip and a single snapshot.
 */
import DataLoader from "dataloader";
import type { Gateway } from "../core/gateway.ts";
import type { ReadRequest } from "../core/store.ts";
import type { Node } from "../core/types.ts";

export interface Loaders {
  path: DataLoader<ReadRequest, Node | undefined, string>;
}

export interface KoraContext {
  gateway: Gateway;
  loaders: Loaders;
}

export function createLoaders(gateway: Gateway): Loaders {
  return {
    path: new DataLoader(
      async (requests) => (await gateway.read(requests)).values,
      { cacheKeyFn: (r) => JSON.stringify([r.path, r.options ?? null]) },
    ),
  };
}

export function createContext(gateway: Gateway): KoraContext {
  return { gateway, loaders: createLoaders(gateway) };
}
