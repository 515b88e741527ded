/**
 * The gateway core: one object that reads, commits and watches, with limits applied. Transports
 * (GraphQL over HTTP, SSE and WebSocket) sit on top of it; it knows nothing about them.
 */
import type { BuildMutation, CommitResult, ReadRequest, ReadResult, Store } from "./store.ts";
import { DEFAULT_LIMITS, type Limits, type Mutation, type Path } from "./types.ts";
import { type Watch, type WatchHub, type WatchOptions, createWatchHub } from "./watch.ts";

/** The smallest logger interface Kora needs; pino satisfies it. */
export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

export interface GatewayOptions {
  store: Store;
  /** Input limits; any left out take the defaults of `DEFAULT_LIMITS`. */
  limits?: Partial<Limits>;
  /** Most undelivered events per watch before it is resynced with a snapshot. Default 1000. */
  watchBuffer?: number;
  /**
   * Change-log retention: entries are removed once they are both older than `maxAgeMs`
   * (default 24 h) and more than `keep` versions old (default 100,000), checked every
   * `intervalMs` (default 60 s; 0 disables trimming).
   */
  retention?: { keep?: number; maxAgeMs?: number; intervalMs?: number };
  log?: Logger;
}

export interface Gateway {
  readonly store: Store;
  readonly limits: Limits;
  readonly hub: WatchHub;
  readonly log: Logger;
  read(requests: readonly ReadRequest[]): Promise<ReadResult>;
  /** Commits a normalized mutation, or one built inside the write transaction. */
  commit(mutation: Mutation | BuildMutation): Promise<CommitResult>;
  watch(path: Path, options?: WatchOptions): Promise<Watch>;
  /** Stops accepting work, waits for in-flight commits, ends watches, closes the store. */
  close(): Promise<void>;
}

export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { store } = options;
  const log = options.log ?? silentLogger;
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const hub = createWatchHub({
    store,
    maxBuffer: options.watchBuffer ?? 1000,
    onError: (error) => log.error({ err: error }, "reading the change log failed; retrying"),
  });
  await hub.start();

  const keep = options.retention?.keep ?? 100_000;
  const maxAgeMs = options.retention?.maxAgeMs ?? 24 * 60 * 60 * 1000;
  const intervalMs = options.retention?.intervalMs ?? 60_000;
  const trimTimer =
    intervalMs > 0
      ? setInterval(() => {
          store.trim({ keep, maxAgeMs }).catch((error) => log.warn({ err: error }, "trimming the change log failed"));
        }, intervalMs)
      : undefined;
  trimTimer?.unref();

  let closing = false;
  const inFlight = new Set<Promise<unknown>>();

  return {
    store,
    limits,
    hub,
    log,
    read: (requests) => store.read(requests),
    async commit(mutation) {
      if (closing) throw new Error("gateway is shutting down");
      const build: BuildMutation = typeof mutation === "function" ? mutation : async () => mutation;
      const pending = store.commit(build);
      inFlight.add(pending);
      try {
        return await pending;
      } finally {
        inFlight.delete(pending);
      }
    },
    watch: (path, watchOptions) => hub.watch(path, watchOptions),
    async close() {
      if (closing) return;
      closing = true;
      if (trimTimer) clearInterval(trimTimer);
      await Promise.allSettled([...inFlight]);
      await hub.close();
      await store.close();
    },
  };
}
