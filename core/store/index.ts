export { createPgliteStore, openPglite, type PgliteDatabase, type PgliteStoreOptions } from "./pglite.ts";
export { createPostgresStore, type PostgresStoreOptions } from "./postgres.ts";

export { openStore } from "./open.ts";
