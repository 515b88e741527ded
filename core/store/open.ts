/**
 * Opens the store a deployment names: server PostgreSQL when a URL is given, else PGlite in
 * `dataDir`. Each driver is imported only when used: PGlite's WebAssembly alone takes a good part
 * of a second to load, which a server on PostgreSQL (or a CLI command that fails early) never pays.
 */
import type { Store } from "../store.ts";

export async function openStore(options: { databaseUrl?: string | undefined; dataDir?: string | undefined; schema?: string }): Promise<Store> {
  const schema = options.schema ?? "kora";
  if (options.databaseUrl) {
    const { createPostgresStore } = await import("./postgres.ts");
    return createPostgresStore({ url: options.databaseUrl, schema });
  }
  const { createPgliteStore } = await import("./pglite.ts");
  return createPgliteStore({ dataDir: options.dataDir ?? "./.kora", schema });
}
