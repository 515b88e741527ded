export { createPgliteStore, openPglite, type PgliteDatabase, type PgliteStoreOptions } from "./pglite.ts";
export { createPostgresStore, type PostgresStoreOptions } from "./postgres.ts";

import type { Store } from "../store.ts";
import { createPgliteStore } from "./pglite.ts";
import { createPostgresStore } from "./postgres.ts";

/** Server PostgreSQL when a URL is given, else PGlite in `dataDir` (default `./.kora`). */
export function createStoreFromEnv(options: { databaseUrl?: string | undefined; dataDir?: string; schema?: string }): Promise<Store> {
  const schema = options.schema ?? "kora";
  return options.databaseUrl
    ? createPostgresStore({ url: options.databaseUrl, schema })
    : createPgliteStore({ dataDir: options.dataDir ?? "./.kora", schema });
}
