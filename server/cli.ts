/**
 * `npm start`: serves Kora on PORT (default 4000) with GraphiQL at /graphql, on the server
 * PostgreSQL named by DATABASE_URL or else on an embedded PostgreSQL (PGlite) in KORA_DATA_DIR.
 * Environment: PORT, HOST, DATABASE_URL, KORA_DATA_DIR (default ./.kora), KORA_SCHEMA (default
 * kora), KORA_MAX_MUTATION_BYTES, LOG_LEVEL (default info).
 */
import { pino } from "pino";
import { createStoreFromEnv } from "../core/store/index.ts";
import { startKora } from "./index.ts";

const log = pino({ level: process.env.LOG_LEVEL ?? "info" });

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL || undefined;
  const dataDir = process.env.KORA_DATA_DIR || "./.kora";
  const store = await createStoreFromEnv({ databaseUrl, dataDir, schema: process.env.KORA_SCHEMA || "kora" });
  const maxMutationBytes = process.env.KORA_MAX_MUTATION_BYTES ? Number(process.env.KORA_MAX_MUTATION_BYTES) : undefined;
  const kora = await startKora({
    store,
    log,
    port: process.env.PORT ? Number(process.env.PORT) : 4000,
    ...(process.env.HOST ? { host: process.env.HOST } : {}),
    ...(maxMutationBytes ? { limits: { maxMutationBytes } } : {}),
  });
  log.info({ url: kora.url, store: store.description }, `Kora is serving ${kora.url} (GraphiQL) on ${store.description}`);
  console.log(`Kora: GraphiQL at ${kora.url} — store: ${store.description}`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down: finishing in-flight writes");
    kora.close().then(
      () => process.exit(0),
      (error) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((error) => {
  log.error({ err: error }, "Kora failed to start");
  process.exit(1);
});
