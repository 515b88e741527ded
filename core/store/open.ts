/**
 * Opens the store a deployment names: server PostgreSQL when a URL is given, else PGlite in
 * `dataDir`. Each driver is imported only when used: PGlite's WebAssembly alone takes a good part
 * of a second to load, which a server on PostgreSQL (or a CLI command that fails early) never pays.
 */
import type { Store } from "../store.ts";
import type { FeedTimings, PostgresTimeouts } from "./postgres.ts";

export async function openStore(options: {
  databaseUrl?: string | undefined;
  dataDir?: string | undefined;
  schema?: string;
  /** Server PostgreSQL only: deadlines and change-feed checks (docs/operations.md). */
  timeouts?: Partial<PostgresTimeouts>;
  feed?: Partial<FeedTimings>;
  /** Server PostgreSQL only: told of each failed connection (the store reconnects by itself). */
  onError?: (error: unknown) => void;
}): Promise<Store> {
  const schema = options.schema ?? "kora";
  if (options.databaseUrl) {
    const { createPostgresStore } = await import("./postgres.ts");
    return createPostgresStore({
      url: options.databaseUrl,
      schema,
      ...(options.timeouts ? { timeouts: options.timeouts } : {}),
      ...(options.feed ? { feed: options.feed } : {}),
      ...(options.onError ? { onError: options.onError } : {}),
    });
  }
  const { createPgliteStore } = await import("./pglite.ts");
  return createPgliteStore({ dataDir: options.dataDir ?? "./.kora", schema });
}
