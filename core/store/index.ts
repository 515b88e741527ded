export { createPgliteStore, openPglite, type PgliteDatabase, type PgliteStoreOptions } from "./pglite.ts";
export { createPostgresStore, type PostgresStoreOptions } from "./postgres.ts";

import type { Store } from "../store.ts";
import { openStore } from "./open.ts";
import type { FeedTimings, PostgresTimeouts } from "./postgres.ts";

/** Server PostgreSQL when a URL is given, else PGlite in `dataDir` (default `./.kora`). */
export function createStoreFromEnv(options: {
  databaseUrl?: string | undefined;
  dataDir?: string;
  schema?: string;
  timeouts?: Partial<PostgresTimeouts>;
  feed?: Partial<FeedTimings>;
  onError?: (error: unknown) => void;
}): Promise<Store> {
  return openStore(options);
}
