/**
 * Per-operation context. A fresh loader set per operation (and per subscription event) batches
 * every `path` field of one operation into a single store round trip and a single snapshot.
 */
import DataLoader from "dataloader";
import type { Caller, Gateway } from "../core/gateway.ts";
import type { ReadRequest } from "../core/store.ts";
import type { Node } from "../core/types.ts";

export interface Loaders {
  path: DataLoader<ReadRequest, Node | undefined, string>;
}

export interface KoraContext {
  gateway: Gateway;
  loaders: Loaders;
  /** Who is asking: every read, commit and watch of the operation runs as this caller. */
  caller: Caller;
}

export function createLoaders(gateway: Gateway, caller: Caller): Loaders {
  return {
    path: new DataLoader(
      // Each request is authorized on its own (a forbidden one yields its error, not the batch's).
      async (requests) => (await gateway.query(requests, caller)).values as (Node | undefined | Error)[],
      { cacheKeyFn: (r) => JSON.stringify([r.path, r.options ?? null]) },
    ),
  };
}

export function createContext(gateway: Gateway, caller: Caller): KoraContext {
  return { gateway, loaders: createLoaders(gateway, caller), caller };
}
