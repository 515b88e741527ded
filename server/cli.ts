#!/usr/bin/env node
/**
 * `npm start`: serves Kora on PORT (default 4000) with GraphiQL at /graphql, on the server
 * PostgreSQL named by DATABASE_URL or else on an embedded PostgreSQL (PGlite) in KORA_DATA_DIR.
 * Environment: PORT, HOST, DATABASE_URL, KORA_DATA_DIR (default ./.kora), KORA_SCHEMA (default
 * kora), KORA_MAX_MUTATION_BYTES, LOG_LEVEL (default info), KORA_CONFIG (like --config).
 * Options: `--config PATH` loads that config file instead of ./kora.config.ts (server/config.ts).
 */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { createStoreFromEnv } from "../core/store/index.ts";
import { loadConfig, prepareConfig } from "./config.ts";
import { startKora } from "./index.ts";
import { type EnvSettings, settingsFromEnv, splitTimeouts } from "./settings.ts";

let env: EnvSettings;
try {
  env = settingsFromEnv();
} catch (error) {
  console.error(`Kora failed to start: ${(error as Error).message}`);
  process.exit(1);
}
const log = pino({ level: env.logLevel });
// Last line of defence: no known path leaves a rejection unhandled (the fault suite checks that
// this line is never logged), but a gateway that stops serving over one would lose every watch.
process.on("unhandledRejection", (reason) => log.error({ err: reason }, "BUG: unhandled rejection; the process keeps serving"));

async function main(): Promise<void> {
  const { values: args } = parseArgs({ options: { config: { type: "string" } }, allowPositionals: false });
  // Environment (above), config and rules first: a mistake fails start-up before any store opens.
  const loaded = await loadConfig(args.config ?? env.config);
  if (loaded.file) log.info({ file: loaded.file }, `config loaded from ${loaded.file}`);
  const prepared = prepareConfig(loaded, log);
  const { config } = loaded;
  const timeouts = splitTimeouts({ ...config.timeouts, ...env.timeouts });
  const store = await createStoreFromEnv({
    databaseUrl: env.databaseUrl,
    dataDir: env.dataDir,
    schema: env.schema,
    timeouts: timeouts.store,
    feed: timeouts.feed,
    // A lost connection is retried by the store itself; the log says what happened.
    onError: (error) => log.warn({ err: error }, `store connection failed: ${error instanceof Error ? error.message : String(error)}`),
  });
  const limits = { ...config.limits, ...env.limits };
  const kora = await startKora({
    store,
    log,
    port: env.port,
    ...(env.host ? { host: env.host } : {}),
    limits,
    interceptors: prepared.interceptors,
    authenticate: prepared.authenticate,
    ...(config.documentLimits ? { documentLimits: config.documentLimits } : {}),
    ...(config.operationLimits ? { operationLimits: config.operationLimits } : {}),
    ...(config.cors ? { cors: config.cors } : {}),
    ...(config.rateLimits !== undefined ? { rateLimits: config.rateLimits } : {}),
    ...(config.trustedProxies ? { trustedProxies: config.trustedProxies } : {}),
    ...(config.watchBuffer !== undefined ? { watchBuffer: config.watchBuffer } : {}),
    ...(config.chain ? { chain: config.chain } : {}),
    ...(timeouts.requestTimeoutMs !== undefined ? { requestTimeoutMs: timeouts.requestTimeoutMs } : {}),
    keepAlive: { ...timeouts.keepAlive, ...(config.socketBufferBytes ? { maxBufferedBytes: config.socketBufferBytes } : {}) },
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
  // Also in plain words on stderr: a bad rules file names its file, line and pattern here.
  console.error(`Kora failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
