/**
 * `kora/client`: Kora's offline-first client (docs/client.md). Works in browsers and Node; the
 * file storage for Node is `kora/client/file`.
 */
export {
  type ClientOptions,
  type Observable,
  type Conflict,
  type PendingWrite,
  type Status,
  type WriteError,
  KoraClient,
  createClient,
} from "./client.ts";
export { type ClientStorage, StorageInUseError, memoryStorage } from "./storage.ts";
export { indexedDbStorage } from "./indexeddb.ts";
export { type TabClientOptions, TabClient, createTabClient } from "./tabs.ts";
export {
  type Connection,
  type Transport,
  type WireEvent,
  type WireResult,
  type WsTransportOptions,
  ConnectionDeadError,
  ServerError,
  wsTransport,
} from "./transport.ts";
export { Hlc, compareStamps, formatStamp, parseStamp } from "../core/hlc.ts";
