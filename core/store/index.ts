export { createPgliteStore, openPglite, type PgliteDatabase, type PgliteStoreOptions } from "./pglite.ts";
export { createPostgresStore, type PostgresStoreOptions } from "./postgres.ts";

import type { Store } from "../store.ts";
import { createPgliteStore } from "./pglite.ts";
import { type FeedTimings, type PostgresTimeouts, createPostgresStore } from "./postgres.ts";

/** Server PostgreSQL when a URL is given, else PGlite in `dataDir` (default `./.kora`). */
export function createStoreFromEnv(options: {
  databaseUrl?: string | undefined;
  dataDir?: string;
  schema?: string;
  /** Server PostgreSQL only: deadlines and change-feed checks (core/store/postgres.ts). */
  timeouts?: Partial<PostgresTimeouts>;
  feed?: Partial<FeedTimings>;
  onError?: (error: unknown) => void;
}): Promise<Store> {
  const schema = options.schema ?? "kora";
  return options.databaseUrl
    ? createPostgresStore({
        url: options.databaseUrl,
        schema,
        ...(options.timeouts ? { timeouts: options.timeouts } : {}),
        ...(options.feed ? { feed: options.feed } : {}),
        ...(options.onError ? { onError: options.onError } : {}),
      })
    : createPgliteStore({ dataDir: options.dataDir ?? "./.kora", schema });
}
